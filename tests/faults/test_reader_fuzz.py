"""The readers (`metrics`, `compare`, `report`, `validate`, `plot`) on malformed files, fuzzed with
hypothesis: whatever is on disk, `ttabench.launch.cli.main` returns 0, 1 or 2 and never raises.

A results folder comes from anywhere (a colleague's cluster, a hand edit, a disk that filled up),
so every file is generated adversarially: random bytes, curves with the right header and wrong
rows (NaN, inf, negative or huge numbers, unicode, NUL, over-long fields), JSON with every key of
summary.json and config.json given a value of the wrong type, non-object top levels, nesting deep
enough to exhaust the parser, mllog lines with broken JSON or odd values, and folders that only
look like runs. Exit code 2 must come with exactly one `ttabench: error:` line.

Each test draws a bounded number of examples (derandomized, so a run is repeatable) to keep the
suite fast on a 2-core machine. For a longer hunt with fresh examples:

    TTABENCH_FUZZ_EXAMPLES=2000 pytest tests/faults/test_reader_fuzz.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttabench.divisions.results import CURVE_HEADER
from ttabench.launch.cli import main

_HUNT = int(os.environ.get("TTABENCH_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_HUNT or 100,
    deadline=None,
    derandomize=not _HUNT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fewer(n: int) -> settings:
    """For the slower tests: n examples (scaled up with TTABENCH_FUZZ_EXAMPLES)."""
    return settings(FUZZ, max_examples=max(n, _HUNT // 3))


HEADER = ",".join(CURVE_HEADER)

# Big inputs are drawn as short markers and expanded when written, so that hypothesis's
# reports of a failing example stay readable.
BIG = {
    "<LONG>": "x" * 140_000,  # a CSV field over csv's size limit (131072)
    "<DEEP[>": "[" * 100_000,  # nesting beyond the JSON parser's recursion limit
    "<DEEP{>": '{"a":' * 50_000,
    "<BIGINT>": "9" * 5000,
}  # over Python's 4300-digit int parsing limit


def expand(text: str) -> str:
    for marker, big in BIG.items():
        text = text.replace(marker, big)
    return text


# --- strategies: values --------------------------------------------------------------------

number_text = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "-1",
            "0.5",
            "1.0",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "1e308",
            "1e309",
            "-1e308",
            "1e-320",
            "4.9e-324",
            "<BIGINT>",
            "1" + "0" * 400 + ".0",
            "0x10",
            "1_000",
            " 1",
            "",
            "  ",
            "1,5",
            "١٢",
            "½",
            "\x00",
            "None",
            "true",
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "success",
            "failed",
            "running",
            "diverged",
            "closed",
            "open",
            "0.1:0.2:0.1",
            "0.1:0.3:0.1",
            "resnet20",
            "synthetic",
            "cifar10-subset",
            "[/x]",
            "$x^$",
            "[bold]",
            "\x00",
            "0.2:0.1:0.1",
            "a:b:c",
            "0.1:0.2:0",
            "1e400:1:1",
        ]
    ),
)

json_junk = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def plausible(value_strategy):
    """Mostly well-typed values, sometimes junk of any type."""
    return st.one_of(value_strategy, json_junk)


def objects(fields: dict):
    """A dict holding a random subset of `fields`, each drawn from its strategy."""
    return st.fixed_dictionaries({}, optional=fields)


unit = st.floats(min_value=0, max_value=1)
seconds = st.floats(min_value=0, max_value=1e6)

metrics_block = objects(
    {
        "threshold_spec": plausible(st.sampled_from(["0.1:0.2:0.1", "0.1:0.3:0.1", "0.5:0.9:0.1"])),
        "target": plausible(unit),
        "budget_s": plausible(seconds),
        "thresholds": plausible(st.lists(unit, max_size=3)),
        "tta_s": plausible(st.lists(st.one_of(st.none(), seconds), max_size=3)),
        "ttmt": json_junk,
        "attmt_s": plausible(seconds),
        "aat": plausible(unit),
        "target_tta_s": plausible(seconds),
        "final_accuracy": plausible(unit),
        "best_accuracy": plausible(unit),
    }
)

per_rank = st.lists(
    plausible(
        st.dictionaries(st.sampled_from(["rank", "train_s", "eval_s"]), plausible(seconds), max_size=3)
    ),
    max_size=3,
)

summary_obj = objects(
    {
        "status": plausible(
            st.sampled_from(["success", "failed", "running", "diverged", "interrupted", "aborted", "weird"])
        ),
        "metrics": plausible(metrics_block),
        "seed": plausible(st.integers(0, 3)),
        "benchmark": plausible(st.sampled_from(["resnet20", "resnet32", "my-model"])),
        "division": plausible(st.sampled_from(["closed", "open"])),
        "dataset": plausible(st.sampled_from(["synthetic", "cifar10", "cifar10-subset"])),
        "synthetic": plausible(st.booleans()),
        "world_size": plausible(st.integers(1, 4)),
        "nodes": plausible(st.integers(1, 2)),
        "backend": json_junk,
        "global_batch": plausible(st.integers(1, 512)),
        "init_s": plausible(seconds),
        "samples": plausible(st.integers(0, 10**6)),
        "steps": plausible(st.integers(0, 10**4)),
        "epochs": plausible(seconds),
        "train_time_s": plausible(seconds),
        "total_time_s": plausible(seconds),
        "eval_time_s": plausible(seconds),
        "throughput_img_s": plausible(seconds),
        "time_breakdown": plausible(
            objects(
                {
                    "max_over_ranks": plausible(
                        st.dictionaries(
                            st.sampled_from(["train_s", "eval_s"]), plausible(seconds), max_size=2
                        )
                    ),
                    "per_rank": plausible(per_rank),
                }
            )
        ),
        "error": json_junk,
        "stop_reason": json_junk,
        "signal": json_junk,
        "diverged_step": json_junk,
        "resumes": json_junk,
    }
)

config_obj = objects(
    {
        "config": plausible(
            objects(
                {
                    "benchmark": plausible(st.sampled_from(["resnet20", "my-model"])),
                    "division": plausible(st.sampled_from(["closed", "open"])),
                    "thresholds": plausible(st.sampled_from(["0.1:0.2:0.1", "0.1:0.3:0.1"])),
                    "target": plausible(unit),
                    "time_budget": plausible(seconds),
                    "batch_size": plausible(st.integers(-1, 600)),
                    "seed": plausible(st.integers(0, 3)),
                    "precision": json_junk,
                    "network": json_junk,
                }
            )
        ),
        "resolved": plausible(
            objects(
                {
                    "seed": plausible(st.integers(0, 3)),
                    "world_size": plausible(st.integers(0, 4)),
                    "global_batch": plausible(st.integers(0, 512)),
                    "system": json_junk,
                    "network": plausible(objects({"mechanism": json_junk, "profile": json_junk})),
                    "network_shaping": plausible(objects({"rate": json_junk, "delay": json_junk})),
                    "peak_lr": plausible(st.floats()),
                    "precision": json_junk,
                }
            )
        ),
        "model": plausible(
            objects(
                {
                    "name": plausible(st.sampled_from(["resnet20", "resnet99"])),
                    "depth": json_junk,
                    "version": json_junk,
                }
            )
        ),
        "recipe": json_junk,
        "data": plausible(
            objects(
                {"name": json_junk, "synthetic": json_junk, "train_size": json_junk, "test_size": json_junk}
            )
        ),
        "submission": plausible(objects({"name": json_junk, "model": json_junk, "optimizer": json_junk})),
        "command": json_junk,
    }
)


def json_text(obj_strategy):
    """JSON text of an object, or something that is not one."""
    return st.one_of(
        obj_strategy.map(json.dumps),
        json_junk.map(json.dumps),  # any top level: list, number, string, null
        st.sampled_from(
            [
                "",
                "{",
                "{}",
                "[]",
                "null",
                '{"status": }',
                "<DEEP[>",
                "<DEEP{>",
                "NaN",
                '{"seed": <BIGINT>}',
                "\ufeff{}",
                '{"status": "success"}\x00',
            ]
        ),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )


def curve_row(n_fields=st.integers(5, 9)):
    return n_fields.flatmap(lambda n: st.lists(number_text, min_size=n, max_size=n)).map(
        lambda fields: ",".join(fields)
    )


good_row = st.tuples(st.integers(0, 100), st.integers(0, 10**6), seconds, unit).map(
    lambda r: f"{r[0]},{r[0]},{r[1]},{r[2]!r},{r[2] + 1!r},{r[3]!r},1.0"
)

# A well-formed curve: times in order, accuracies in 0..1 (ties and the edges included).
evaluation = st.tuples(
    st.one_of(seconds, st.sampled_from([0.0, 1.0, 1e9])),
    st.one_of(unit, st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0])),
)
valid_curve = st.lists(evaluation, max_size=5).map(
    lambda evs: (
        "\n".join(
            [HEADER] + [f"{i},{i},{32 * i},{t!r},{t!r},{a!r},nan" for i, (t, a) in enumerate(sorted(evs))]
        )
        + "\n"
    )
)

curve_text = st.one_of(
    st.lists(st.one_of(good_row, good_row, curve_row(st.just(7)), curve_row()), max_size=6).map(
        lambda rows: "\n".join([HEADER, *rows]) + "\n"
    ),
    st.lists(good_row, max_size=4).map(lambda rows: "\n".join([HEADER, *rows]) + "\n"),
    st.sampled_from(
        [
            "",
            HEADER,
            HEADER + "\n",
            HEADER.upper() + "\n1,1,1,1,1,0.5,1\n",
            HEADER + "\n1,1,1,1e308,1,0.5,1\n2,2,2,1.7e308,1,0.9,1\n",
            HEADER + "\n1,1,1,-1,1,0.5,1\n",
            HEADER + "\n1,1,1,1,1,0.5,1\x00\n",
            HEADER + '\n1,1,1,1,1,0.5,"1\n',
            HEADER + "\n<LONG>\n",
            HEADER + "\r\n1,1,1,1,1,0.5,1\r\n",
            "\ufeff" + HEADER + "\n",
        ]
    ),
    st.text(max_size=80).map(lambda t: HEADER + "\n" + t),
)

mllog_event = objects(
    {
        "namespace": json_junk,
        "time_ms": plausible(st.integers(0, 2**41)),
        "event_type": plausible(st.sampled_from(["POINT_IN_TIME", "INTERVAL_START", "INTERVAL_END"])),
        "key": plausible(
            st.sampled_from(
                [
                    "eval_accuracy",
                    "seed",
                    "submission_benchmark",
                    "run_start",
                    "run_stop",
                    "global_batch_size",
                    "dataset",
                ]
            )
        ),
        "value": json_junk,
        "metadata": plausible(
            objects(
                {
                    "train_time_s": plausible(seconds),
                    "samples": plausible(st.integers(0, 100)),
                    "epoch_num": json_junk,
                    "file": json_junk,
                    "lineno": json_junk,
                }
            )
        ),
    }
)

mllog_line = st.one_of(
    mllog_event.map(lambda e: ":::MLLOG " + json.dumps(e)),
    json_junk.map(lambda e: ":::MLLOG " + json.dumps(e)),
    st.sampled_from(
        [
            ":::MLLOG {",
            ":::MLLOG ",
            ":::MLLOG <DEEP[>",
            "garbage",
            ':::MLLOG {"key": "seed", "value": <BIGINT>}',
            "\x00",
            ':::MLLOG {"key": ["eval_accuracy"], "value": 1}',
        ]
    ),
    st.text(max_size=40),
)
mllog_text = st.lists(mllog_line, max_size=6).map("\n".join)

raw = st.binary(max_size=200)


def run_files(parseable: bool = False):
    """The files of one run folder: each absent, plausible-but-broken, or random bytes; or, when
    `parseable`, each absent or well-formed (valid CSV, JSON objects) with values of any type,
    so that the checks past parsing see the junk too."""
    if parseable:
        return st.fixed_dictionaries(
            {
                "curve.csv": st.one_of(st.none(), valid_curve, valid_curve),
                "summary.json": st.one_of(st.none(), summary_obj.map(json.dumps)),
                "config.json": st.one_of(st.none(), config_obj.map(json.dumps)),
                "mllog.txt": st.one_of(st.none(), mllog_text),
            }
        )

    def one(text_strategy):
        return st.one_of(st.none(), text_strategy, raw)

    return st.fixed_dictionaries(
        {
            "curve.csv": one(curve_text),
            "summary.json": one(json_text(summary_obj)),
            "config.json": one(json_text(config_obj)),
            "mllog.txt": one(mllog_text),
        }
    )


# Names a user's folders may have, including rich markup and matplotlib mathtext.
dir_name = st.sampled_from(["run1", "run-2", "[bold]x", "[/x]", "$x^$", "ünï", "a b", "run1"])


@st.composite
def results_tree(draw):
    """results/<system>/<benchmark>/<division>/<run-id>/ with 1-3 runs, any of them broken,
    and sometimes a stray folder or a directory where a file should be."""
    runs = []
    parseable = draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        where = (
            draw(st.sampled_from(["sys", "[/sys]"])),
            draw(st.sampled_from(["resnet20", "b"])),
            draw(st.sampled_from(["closed", "open", "x"])),
            draw(dir_name),
        )
        runs.append((where, draw(run_files(parseable))))
    extras = draw(
        st.lists(st.sampled_from(["system.json", "stray-dir", "curve.csv-as-dir"]), max_size=2, unique=True)
    )
    system_json = draw(st.one_of(st.none(), json_text(json_junk), raw))
    return runs, extras, system_json


def write(path: str, data) -> None:
    """Text (markers expanded, lone surrogates kept as bytes) or raw bytes."""
    if isinstance(data, str):
        data = expand(data).encode("utf-8", "surrogatepass")
    with open(path, "wb") as f:
        f.write(data)


def write_tree(root: str, tree) -> list[str]:
    """Write a drawn tree below `root`; return the run folders."""
    runs, extras, system_json = tree
    out = []
    for where, files in runs:
        run_dir = os.path.join(root, *where)
        os.makedirs(run_dir, exist_ok=True)
        for name, data in files.items():
            if data is not None:
                write(os.path.join(run_dir, name), data)
        if run_dir not in out:
            out.append(run_dir)
    first = out[0]
    if "stray-dir" in extras:
        os.makedirs(os.path.join(root, "stray", "empty"), exist_ok=True)
    if "curve.csv-as-dir" in extras and not os.path.exists(os.path.join(first, "curve.csv")):
        os.makedirs(os.path.join(first, "curve.csv"))
    if system_json is not None:
        system = os.path.join(root, runs[0][0][0])
        write(os.path.join(system, "system.json"), system_json)
    return out


# --- the property --------------------------------------------------------------------------


def call(*argv: str) -> tuple[int, str, str]:
    """main(argv) in-process; any exception but argparse's SystemExit fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse: only for bad flags, never for bad files
            raise AssertionError(f"argparse exit {e.code} on {argv}: {err.getvalue()}") from None
    assert isinstance(code, int) and code in (0, 1, 2), (argv, code)
    errors = [ln for ln in err.getvalue().splitlines() if ln.startswith("ttabench: error:")]
    if code == 2:
        assert len(errors) == 1, err.getvalue()
        assert all(ln.startswith("ttabench: ") for ln in err.getvalue().splitlines()), err.getvalue()
    else:
        assert not errors, err.getvalue()
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


SPECS = st.sampled_from([[], ["--thresholds", "0.1:0.3:0.1"]])
EXTRA = st.sampled_from(
    [[], ["--target", "0.2"], ["--budget", "5"], ["--target", "0.5", "--budget", "1e300"]]
)


@FUZZ
@given(data=curve_text, spec=SPECS, extra=EXTRA, as_json=st.booleans())
def test_metrics_on_a_fuzzed_curve_file(data, spec, extra, as_json):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "curve.csv")
        write(path, data)
        call("metrics", path, *spec, *extra, *(["--json"] if as_json else []))


@FUZZ
@given(data=raw)
def test_metrics_and_validate_on_random_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "curve.csv")
        with open(path, "wb") as f:
            f.write(data)
        call("metrics", path, "--json")
        call("validate", d, "--no-compliance")


@FUZZ
@given(tree=results_tree(), spec=SPECS, extra=EXTRA, as_json=st.booleans())
def test_metrics_on_fuzzed_results_trees(tree, spec, extra, as_json):
    with tempfile.TemporaryDirectory() as d:
        runs = write_tree(d, tree)
        flags = [*spec, *extra, *(["--json"] if as_json else [])]
        call("metrics", d, *flags)
        call("metrics", *runs, *flags)


@FUZZ
@given(tree=results_tree(), spec=SPECS, as_json=st.booleans())
def test_compare_on_fuzzed_results_trees(tree, spec, as_json):
    with tempfile.TemporaryDirectory() as d:
        runs = write_tree(d, tree)
        flags = [*spec, *(["--json"] if as_json else [])]
        call("compare", runs[0], runs[-1], *flags)
        call("compare", d, runs[0], *flags)


@FUZZ
@given(tree=results_tree(), fmt=st.sampled_from(["md", "csv", "json"]), spec=SPECS, extra=EXTRA)
def test_report_on_fuzzed_results_trees(tree, fmt, spec, extra):
    with tempfile.TemporaryDirectory() as d:
        write_tree(d, tree)
        call("report", d, "--format", fmt, *spec, *extra)


@FUZZ
@given(tree=results_tree(), as_json=st.booleans())
def test_validate_on_fuzzed_results_trees(tree, as_json):
    with tempfile.TemporaryDirectory() as d:
        runs = write_tree(d, tree)
        code, _, _ = call("validate", d, "--no-compliance", *(["--json"] if as_json else []))
        assert code in (0, 1)  # problems are reported as lines, never as an error
        call("validate", runs[0], "--no-compliance")


@fewer(40)
@given(files=st.one_of(run_files(), run_files(parseable=True)))
def test_validate_with_the_compliance_checker_on_fuzzed_runs(files):
    with tempfile.TemporaryDirectory() as d:
        runs = write_tree(d, ([(("sys", "resnet20", "closed", "run1"), files)], [], None))
        code, _, _ = call("validate", runs[0])
        assert code in (0, 1)


@fewer(30)
@given(tree=results_tree(), spec=SPECS)
def test_plot_on_fuzzed_results_trees(tree, spec):
    with tempfile.TemporaryDirectory() as d:
        runs = write_tree(d, tree)
        out = os.path.join(d, "out.png")
        code, _, _ = call("plot", *runs, "-o", out, *spec)
        if code != 0:
            assert not os.path.exists(out)


def test_missing_files_and_folders(tmp_path):
    missing = str(tmp_path / "nope")
    for argv in (
        ["metrics", missing],
        ["compare", missing, missing],
        ["report", missing],
        ["validate", missing],
        ["plot", missing, "-o", str(tmp_path / "x.png")],
    ):
        code, _, err = call(*argv)
        assert code == 2 and missing in err, (argv, err)


def test_empty_folder_and_folders_that_only_look_like_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    looks = tmp_path / "looks" / "run"
    (looks / "curve.csv").mkdir(parents=True)  # a folder where the file should be
    (looks / "summary.json").mkdir()
    for path in (tmp_path / "empty", tmp_path / "looks"):
        for argv in (["metrics", str(path)], ["report", str(path)], ["compare", str(path), str(path)]):
            assert call(*argv)[0] == 2, argv
        assert call("validate", str(path))[0] == 1


@pytest.mark.parametrize(
    "content",
    [
        HEADER + "\n1,1,1,1,1,0.5,1\x00\n",  # NUL byte
        HEADER + "\n" + "9" * 140_000 + ",1,1,1,1,0.5,1\n",  # a field over csv's size limit
        HEADER + "\n1,1,1,1e308,1,0.5,1\n2,2,2,1.7e308,1,0.9,1\n",  # times near the float limit
        "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),  # not UTF-8
    ],
    ids=["nul", "long-field", "huge-times", "not-utf8"],
)
def test_plot_malformed_curve_is_one_line(tmp_path, content):
    path = tmp_path / "curve.csv"
    path.write_text(content, encoding="latin-1")
    code, _, err = call("plot", str(path), "-o", str(tmp_path / "out.png"), "--thresholds", "0.1:0.3:0.1")
    assert code == 2, err
    assert str(path) in err
    assert not (tmp_path / "out.png").exists()
