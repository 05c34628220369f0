"""A mistake on the command line ends in one line that says what to do (real CLI subprocesses)."""

from __future__ import annotations

from ttabench.launch.cli import build_parser
from ttabench.launch.usage import chosen_parser, close_match, comma_list, options


def one_error_line(proc, started: bool = False) -> str:
    """The one stderr line of a user error; stdout is empty unless the run had `started`
    (then it holds only the status lines shown before the worker found the problem)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ttabench: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert started or proc.stdout == ""
    return lines[0]


def test_unknown_flag_suggests_the_close_option(cli, tmp_path):
    line = one_error_line(cli("run", "--synthetic", "--epochs", "3", cwd=tmp_path))
    assert "unrecognized arguments: --epochs 3" in line
    assert "did you mean --max-epochs?" in line
    assert "`ttabench run --help` lists every option" in line
    assert not (tmp_path / "results").exists()  # nothing started, nothing written


def test_unknown_flag_of_a_reader_suggests_from_that_command(cli, tmp_path):
    line = one_error_line(cli("report", str(tmp_path), "--treshold", "0.5:0.6:0.1"))
    assert "did you mean --thresholds?" in line
    assert "`ttabench report --help`" in line


def test_far_unknown_flag_gets_no_guess(cli):
    line = one_error_line(cli("run", "--zzzzzz"))
    assert "did you mean" not in line


def test_invalid_choice_is_one_line_with_the_close_match(cli):
    line = one_error_line(cli("run", "--benchmark", "resnet-20", "--synthetic"))
    assert "invalid choice 'resnet-20' (did you mean resnet20?)" in line
    assert "choose from resnet20, resnet20-v2, resnet32" in line
    assert "usage:" not in line


def test_misspelt_command_suggests_the_command(cli):
    line = one_error_line(cli("rnu", "--synthetic"))
    assert "(did you mean run?)" in line


def test_reversed_thresholds_name_the_flag_and_the_fix(cli, tmp_path):
    line = one_error_line(cli("run", "--synthetic", "--thresholds", "0.92:0.80:0.01", cwd=tmp_path))
    assert line.endswith("--thresholds 0.92:0.80:0.01: LOW is above HIGH (did you mean 0.80:0.92:0.01?)")


def test_data_dir_at_the_parent_suggests_the_child(cli, tmp_path):
    child = tmp_path / "cifar-10-batches-py"
    child.mkdir()
    line = one_error_line(cli("run", "--data-dir", str(tmp_path), "--max-steps", "1"))
    assert line.endswith(f"did you mean --data-dir {child}?")


def test_wrong_model_name_lists_the_callables_of_the_file(cli, tmp_path):
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n    pass\n\n\n"
        "def wide_net():\n    return Net()\n\n\ndef _private():\n    pass\n\n\nWIDTH = 3\n"
    )
    ref = f"{tmp_path / 'nets.py'}:wide"
    line = one_error_line(
        cli("run", "--division", "open", "--model", ref, "--synthetic", "--max-steps", "1", cwd=tmp_path),
        started=True,
    )
    # Classes and functions defined in the file; not imports (nn), private names or constants.
    assert line.endswith("has no attribute 'wide'; it has: Net, wide_net"), line


def test_chosen_parser_and_matches_follow_the_real_parser():
    parser = build_parser()
    assert chosen_parser(parser, ["netlab", "run", "--x"]).prog == "ttabench netlab run"
    assert chosen_parser(parser, ["sweep", "--", "run"]).prog == "ttabench sweep"
    assert close_match("--max-epoch", options(chosen_parser(parser, ["run"]))) == "--max-epochs"
    assert close_match("--zzz", options(parser)) is None


def test_comma_list_flags_ignore_spaces_and_empty_items():
    assert comma_list("allreduce, fp16,,topk ") == ["allreduce", "fp16", "topk"]
    assert comma_list("") == [] and comma_list(None) == [] and comma_list(" , ") == []
