"""The sbatch script `ttabench submit` writes, read as an admin reads it: every request as a
flag of its own, the log, the working directory and the environment stated, set-up lines,
the user's own sbatch options in both spellings, and every clash refused before anything is
made. Checked through `--dry-run` (no cluster needed); tests/test_slurm.py submits such a
script to the real local cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import run_cli

from ttabench.launch import cli

TINY = ("--nodes", "2", "--workers", "1", "--threads", "1", "--synthetic", "--max-steps", "3")
TINY += ("--system", "local-test-cluster")


def _dry(cwd, *extra, backend="torchrun") -> str:
    r = run_cli(
        "submit", *TINY, "--backend", backend, "--results-dir", "results", "--log-dir", "logs",
        "--dry-run", *extra, cwd=cwd,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def _sbatch_lines(script: str) -> list[str]:
    return [ln.removeprefix("#SBATCH ") for ln in script.splitlines() if ln.startswith("#SBATCH ")]


@pytest.fixture
def setup_file(tmp_path):
    path = tmp_path / "env.sh"
    path.write_text("#!/bin/bash\nmodule load python/3.11\nsource .venv/bin/activate\n")
    return path


def test_the_script_states_every_request_and_runs_the_set_up_first(tmp_path, setup_file):
    cwd = os.path.realpath(tmp_path)
    script = _dry(
        tmp_path, "--partition", "debug", "--account", "research", "--qos", "high", "--time", "30",
        "--cpus-per-task", "4", "--mem", "16G", "--gres", "gpu:a100:2", "--constraint", "avx512",
        "--setup", str(setup_file), "--sbatch-arg", "--begin now+1hour", "--sbatch-arg=--comment=benchmark",
    )  # fmt: skip
    assert _sbatch_lines(script) == [
        "--job-name=ttabench-resnet20",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--partition=debug",
        "--account=research",
        "--qos=high",
        "--time=30",
        "--cpus-per-task=4",
        "--mem=16G",
        "--gres=gpu:a100:2",
        "--constraint=avx512",
        "--exclusive",
        f"--chdir={cwd}",
        f"--output={cwd}/logs/slurm-%j.out",
        f"--error={cwd}/logs/slurm-%j.out",
        "--open-mode=append",
        "--export=ALL",
        "--no-requeue",
        "--signal=USR1@60",
        "--begin=now+1hour",
        "--comment=benchmark",
    ]
    lines = script.splitlines()
    # The set-up file's lines (less its #!), with `set -u` only after them, before the job's first line.
    at = lines.index("set -eo pipefail")
    assert lines[at + 3 : at + 7] == [
        "module load python/3.11",
        "source .venv/bin/activate",
        "# End of set-up.",
        "set -u",
    ], lines[at:]
    assert f"--setup {setup_file}" in lines[at + 1]
    assert at < min(i for i, ln in enumerate(lines) if ln.startswith("run_dir="))
    # The results folder is absolute in the node's command: a saved job.sbatch writes where it did.
    assert f" --results-dir {cwd}/results " in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["env.sh"]  # nothing made: no results, no logs


def test_defaults_and_opt_outs(tmp_path):
    lines = _sbatch_lines(_dry(tmp_path))
    assert "--exclusive" in lines and "--export=ALL" in lines
    assert not [ln for ln in lines if ln.split("=")[0] in ("--cpus-per-task", "--mem", "--qos", "--signal")]
    lines = _sbatch_lines(_dry(tmp_path, "--no-exclusive", "--export", "NONE", "--time", "0"))
    assert "--exclusive" not in lines and "--export=NONE" in lines
    assert "--time=0" in lines and not [ln for ln in lines if ln.startswith("--signal")], lines
    assert "set -euo pipefail" in _dry(tmp_path).splitlines()  # no set-up: as strict from the start


@pytest.mark.parametrize(
    "given",
    [
        ("--sbatch-arg", "--begin now+1hour"),
        ("--sbatch-arg=--begin=now+1hour",),
        ("--sbatch-arg", "--begin=now+1hour"),
    ],
)
def test_sbatch_arg_in_both_spellings(tmp_path, given):
    assert _sbatch_lines(_dry(tmp_path, *given))[-1] == "--begin=now+1hour"


def _sbatch_argv(line: str) -> list[str]:
    """The arguments sbatch reads from one `#SBATCH` line: its script parser (`_get_argument`
    in Slurm's src/sbatch/opt.c) splits on whitespace outside quotes, takes `"` and `'` as
    quotes and a backslash as an escape, and stops at an unquoted `#`."""
    argv, word, quote, i = [], None, None, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            word, i = (word or "") + line[i + 1], i + 2
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "\"'":
            quote, word = c, word or ""
        elif c == "#":
            break
        elif c.isspace():
            if word is not None:
                argv.append(word)
            word = None
        else:
            word = (word or "") + c
        i += 1
    assert quote is None, f"unmatched {quote} in {line!r}"
    return argv + ([word] if word is not None else [])


@pytest.mark.parametrize(
    "given, argv",
    [
        ('--comment "two words"', ["--comment=two words"]),
        ("--comment two words", ["--comment=two words"]),
        ("--comment=two  words", ["--comment=two  words"]),
        ("-d after:1 #x", ["-d", "after:1 #x"]),
        ("--hold", ["--hold"]),
        ('--comment=a\\b "c"', ['--comment=a\\b "c"']),
    ],
)
def test_sbatch_arg_of_several_words_reaches_sbatch_as_one(tmp_path, given, argv):
    line = _sbatch_lines(_dry(tmp_path, f"--sbatch-arg={given}"))[-1]
    assert _sbatch_argv(line) == argv, line


def test_a_folder_with_spaces_quotes_and_hashes_is_one_sbatch_argument(tmp_path):
    where = tmp_path / 'my runs #1 "it\'s"'
    where.mkdir()
    cwd = os.path.realpath(where)
    lines = _sbatch_lines(_dry(where, "--log-dir", "my logs"))
    stated = dict(a.split("=", 1) for ln in lines for a in _sbatch_argv(ln) if "=" in a)
    assert stated["--chdir"] == cwd, lines
    assert stated["--output"] == stated["--error"] == f"{cwd}/my logs/slurm-%j.out", lines
    assert len([a for ln in lines for a in _sbatch_argv(ln)]) == len(lines)  # one argument a line
    assert os.listdir(where) == []


def test_horovod_gets_the_same_header_and_set_up(tmp_path, setup_file):
    flags = ("--cpus-per-task", "2", "--mem", "1G", "--setup", str(setup_file), "--no-exclusive")
    torchrun, horovod = _dry(tmp_path, *flags), _dry(tmp_path, *flags, backend="horovod")
    head = lambda s: s[: s.index("# The run folder")]  # noqa: E731
    assert head(horovod) == head(torchrun)
    assert "--cpus-per-task=2" in head(horovod) and "module load python/3.11" in head(horovod)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--sbatch-arg=--qos=high",), "--sbatch-arg '--qos=high': use --qos instead"),
        (("--sbatch-arg", "-q high"), "--sbatch-arg '-q high': use --qos instead"),
        (("--sbatch-arg", "--output /tmp/x.out"), "use --log-dir instead (the script states --output"),
        (("--sbatch-arg=-e err.txt",), "use --log-dir instead (the script states --error"),
        (("--sbatch-arg=--exclusive",), "use --exclusive/--no-exclusive instead"),
        (("--sbatch-arg", "-c 4"), "use --cpus-per-task instead"),
        (("--sbatch-arg", "--mem=4G"), "use --mem instead"),
        (("--sbatch-arg", "--partition debug"), "use --partition instead"),
        (("--sbatch-arg", "--requeue"), "ttabench sets --requeue itself (the script says --no-requeue"),
        (("--sbatch-arg=--signal=USR2@30",), "ttabench sets --signal itself"),
        (("--sbatch-arg=--chdir=/",), "ttabench sets --chdir itself"),
        (("--sbatch-arg=--begin=now", "--sbatch-arg=--begin=now+1"), "--begin given twice"),
        (("--sbatch-arg", "hold"), "--sbatch-arg must be an sbatch option"),
        (("--mem", "16GB"), "--mem must be a size in Slurm's units"),
        (("--cpus-per-task", "0"), "--cpus-per-task must be >= 1, got 0"),
        (("--qos", "a b"), "--qos must be one word"),
        (("--account", "acct\necho INJECTED"), "--account must not hold control characters such as '\\n'"),
        (("--partition", "debug\n#SBATCH --requeue"), "--partition must not hold control characters"),
        (("--qos", "high\r"), "--qos must not hold control characters such as '\\r'"),
        (("--gres", "gpu:1\x00"), "--gres must not hold control characters"),
        (("--constraint", "avx\x1b[2J"), "--constraint must not hold control characters"),
        (("--mem", "4G\n"), "--mem must not hold control characters"),
        (("--time", "30\necho x"), "--time"),
        (("--log-dir", "logs\necho INJECTED"), "--log-dir must not hold control characters"),
        (("--export", "ALL\x7f"), "--export must not hold control characters"),
        (("--sbatch-arg", "--begin=now\n#SBATCH --requeue"), "--sbatch-arg must not hold control characters"),
        (("--sbatch-arg", "--comment=a\tb"), "--sbatch-arg must not hold control characters such as '\\t'"),
        (("--results-dir", "res\nults"), "--results-dir must not hold control characters"),
        (("--log-dir", "logs-%u"), "--log-dir must not hold % or \\ (sbatch reads them"),
        (("--log-dir", "a\\b"), "--log-dir must not hold % or \\"),
        (("--setup", "missing.sh"), "--setup missing.sh: no such file"),
        (("--setup", sys.executable), "not a text file"),
        (("--setup", "/"), "--setup /: not a file"),
        (("--scheduler", "torchx:local_cwd", "--setup", "x.sh"), "--setup: Slurm options; --scheduler"),
    ],
)
def test_a_clash_or_a_bad_value_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, extra, message):
    """Checked before sbatch is looked for: here it is not on PATH, so a check that let the
    request through would end in another line. (In this process: the CLI's own entry point.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    code = cli.main(["submit", *TINY, "--results-dir", "results", "--log-dir", "logs", *extra])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    (line,) = err.splitlines()
    assert line.startswith("ttabench: error: ") and message in line, line
    assert os.listdir(tmp_path) == []


def test_a_clash_through_the_command_line_is_one_line_and_leaves_nothing(tmp_path):
    r = run_cli(
        "submit", *TINY, "--sbatch-arg", "--output /tmp/x.out", "--results-dir", "results", cwd=tmp_path
    )
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "use --log-dir instead" in r.stderr and os.listdir(tmp_path) == []


def test_a_working_folder_with_a_newline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    where = tmp_path / "runs\necho INJECTED"
    where.mkdir()
    monkeypatch.chdir(where)
    code = cli.main(
        ["submit", *TINY, "--results-dir", "/tmp/unused", "--log-dir", "/tmp/unused", "--dry-run"]
    )
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out + err
    (line,) = err.splitlines()
    assert line.startswith("ttabench: error: the working directory must not hold control characters"), line
    assert os.listdir(where) == []
