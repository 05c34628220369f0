"""Bad input a user can give, each ending in one clear error line and a non-zero exit, for
real (`python -m ttabench ...` in a subprocess). tests/test_cli_run.py covers most run flags
and malformed curves given to `metrics`; these are the cases it leaves out: unsafe archives
given to `ttabench data download` (served by a real HTTP server on 127.0.0.1), flag values
out of range or that do not parse, and a malformed curve or mllog given to `validate`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile

import pytest
from conftest import run_cli
from test_download import regular, server, special, tarball  # noqa: F401  (server: a fixture)

from ttabench.reference_impls import download as dl

HEADER = "epoch,step,samples,train_time_s,total_time_s,accuracy,loss"


def one_error_line(proc, code: int = 2) -> str:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- unsafe archives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members, expected",
    [
        (
            [regular(f"{dl.FOLDER}/../../evil")],
            "member 'cifar-10-batches-py/../../evil' has a '..' component",
        ),
        ([regular("../evil")], "member '../evil' has a '..' component"),
        ([regular("/tmp/evil-abs")], "member '/tmp/evil-abs' has an absolute path"),
        (
            [special(f"{dl.FOLDER}/link", tarfile.SYMTYPE, "/etc"), regular(f"{dl.FOLDER}/link/passwd")],
            "member 'cifar-10-batches-py/link' is a symlink (to '/etc')",
        ),
        (
            [special(f"{dl.FOLDER}/hard", tarfile.LNKTYPE, "/etc/passwd")],
            "member 'cifar-10-batches-py/hard' is a hardlink (to '/etc/passwd')",
        ),
    ],
    ids=["dotdot-in-folder", "dotdot", "absolute", "symlink", "hardlink"],
)
def test_download_refuses_unsafe_archive(server, tmp_path, members, expected):  # noqa: F811
    blob = tarball(members)
    with open(os.path.join(server.state.root, dl.ARCHIVE), "wb") as f:
        f.write(blob)
    dest = tmp_path / "data"
    proc = run_cli(
        "data",
        "download",
        "--dir",
        str(dest),
        "--url",
        server.url + dl.ARCHIVE,
        "--md5",
        hashlib.md5(blob).hexdigest(),
        env={"no_proxy": "*"},
        timeout=120,
    )
    line = one_error_line(proc)
    archive = dest / dl.ARCHIVE
    assert line == f"ttabench: error: refusing to extract {archive}: {expected}"
    # Nothing was extracted anywhere: the verified archive is all that is left.
    assert sorted(os.listdir(dest)) == [dl.ARCHIVE]
    assert not os.path.exists(tmp_path / "evil") and not os.path.exists("/tmp/evil-abs")


def test_download_md5_flag_is_checked(tmp_path):
    line = one_error_line(
        run_cli(
            "data", "download", "--dir", str(tmp_path), "--url", "http://127.0.0.1:9/x.tar.gz", "--md5", "abc"
        )
    )
    assert line == "ttabench: error: --md5 must be 32 hexadecimal digits, got 'abc'"


# --- flag values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, prefix",
    [
        (("--workers", "-1"), "--workers must be >= 1, got -1"),
        (
            ("--thresholds", "0.5:1.5:0.5"),
            "--thresholds 0.5:1.5:0.5: thresholds must satisfy 0 <= low <= high <= 1, got 0.5:1.5",
        ),
        (
            ("--thresholds=-0.1:0.5:0.1",),
            "--thresholds -0.1:0.5:0.1: thresholds must satisfy 0 <= low <= high <= 1, got -0.1:0.5",
        ),
        (
            ("--thresholds", "0.5:0.4:0.1"),
            "--thresholds 0.5:0.4:0.1: LOW is above HIGH (did you mean 0.4:0.5:0.1?)",
        ),
        (
            ("--thresholds", "nan:0.5:0.1"),
            "--thresholds nan:0.5:0.1: thresholds must satisfy 0 <= low <= high <= 1",
        ),
        (("--bandwidth", "fast"), "cannot parse bandwidth 'fast' (e.g. 1gbit, 100mbit, 125mbps; units: "),
        (("--bandwidth=-1gbit",), "cannot parse bandwidth '-1gbit'"),
        (("--bandwidth", "1e999gbit"), "bandwidth '1e999gbit' is not a finite number"),
        (
            ("--bandwidth", "1gbit", "--latency", "5 minutes"),
            "cannot parse latency '5 minutes' (e.g. 0.5ms, 50us, 0.01s; units: ",
        ),
        (("--bandwidth", "1gbit", "--latency", "1e400s"), "latency '1e400s' is not a finite number"),
        (("--latency", "5ms"), "--latency needs --bandwidth"),
    ],
    ids=[
        "negative-workers",
        "high-above-1",
        "low-below-0",
        "out-of-order",
        "nan",
        "bandwidth-word",
        "bandwidth-negative",
        "bandwidth-infinite",
        "latency-minutes",
        "latency-infinite",
        "latency-alone",
    ],
)
def test_bad_run_flag_is_one_line(tmp_path, args, prefix):
    results = tmp_path / "results"
    line = one_error_line(
        run_cli(
            "run",
            "--synthetic",
            "--max-steps",
            "1",
            "--progress",
            "none",
            "--results-dir",
            str(results),
            *args,
            timeout=120,
        )
    )
    assert line.startswith("ttabench: error: " + prefix), line
    assert not results.exists()  # refused before anything started


def test_unknown_benchmark_is_one_argparse_line(tmp_path):
    proc = run_cli(
        "run", "--synthetic", "--benchmark", "resnet1000", "--results-dir", str(tmp_path / "results")
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no usage block: one line with the valid choices
    assert lines[0].startswith("ttabench: error: argument --benchmark: invalid choice 'resnet1000'"), lines
    assert "choose from resnet20, resnet20-v2," in lines[0]


# --- malformed curve or mllog given to the readers ---------------------------------------------


def make_run(root, curve: str, mllog: str) -> str:
    run = root / "results" / "sys" / "resnet20" / "closed" / "run1"
    run.mkdir(parents=True)
    (run / "curve.csv").write_text(curve)
    (run / "mllog.txt").write_text(mllog)
    return str(run)


GOOD_CURVE = f"{HEADER}\n1.0,10,1280,12.5,14.0,0.5,1.2\n"
GOOD_LOG = ':::MLLOG {"key": "eval_accuracy", "value": 0.5, "metadata": {"samples": 1280}}\n'


def test_validate_names_the_bad_curve_line(tmp_path):
    run = make_run(
        tmp_path, f"{HEADER}\n1.0,10,1280,12.5,14.0,0.5,1.2\n2.0,20,2560,25.0,28.0,1.7,1.0\n", GOOD_LOG
    )
    proc = run_cli("validate", run, "--no-compliance")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert (
        f"{run}/curve.csv: {run}/curve.csv:3: accuracy must be a fraction in 0..1, got 1.7" not in proc.stdout
    )  # the path is said once
    assert f"{run}/curve.csv:3: accuracy must be a fraction in 0..1, got 1.7" in proc.stdout.splitlines()
    assert proc.stdout.splitlines()[-1].startswith("FAILED: ")


def test_validate_names_the_bad_mllog_line(tmp_path):
    run = make_run(
        tmp_path,
        GOOD_CURVE,
        GOOD_LOG
        + ':::MLLOG {"key": "eval_stop", \n'
        + "not a log line\n"
        + ":::MLLOG "
        + "[" * 100_000
        + "\n",
    )
    proc = run_cli("validate", run, "--no-compliance")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert (
        f"{run}/mllog.txt: line 2: bad JSON (Expecting property name enclosed in double quotes)" in lines
    ), lines
    assert f"{run}/mllog.txt: line 3 is not an :::MLLOG event" in lines, lines
    assert f"{run}/mllog.txt: line 4: bad JSON (RecursionError)" in lines, lines
    assert lines[-1].startswith("FAILED: ")


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("mllog.txt", GOOD_LOG, "{path}: not a ttabench curve (header must be " + HEADER + ")"),
        ("curve.csv", f'{HEADER}\n1.0,10,1280,12.5,14.0,0.5,"1.2\n', "{path}:2: not valid CSV ("),
        (
            "curve.csv",
            f"{HEADER}\n1.0,10,1280,-12.5,14.0,0.5,1.2\n",
            "{path}:2: train_time_s must be a finite number of seconds in 0..1e+09, got -12.5",
        ),
        (
            "curve.csv",
            f"{HEADER}\n1.0,10,-1280,12.5,14.0,0.5,1.2\n",
            "{path}:2: samples must be >= 0, got -1280",
        ),
        (
            "curve.csv",
            f"{HEADER}\n1.0,10,1280,1e300,1e300,0.5,1.2\n",
            "{path}:2: train_time_s must be a finite number of seconds in 0..1e+09, got 1e300",
        ),
        ("curve.csv", b"\xff\xfe" + HEADER.encode("utf-16-le"), "cannot read curve file {path}: "),
    ],
    ids=["mllog-as-curve", "open-quote", "negative-time", "negative-samples", "huge-time", "utf16"],
)
def test_metrics_on_malformed_file_is_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    line = one_error_line(run_cli("metrics", str(path), "--thresholds", "0.1:0.2:0.1"))
    assert line.startswith("ttabench: error: " + expected.format(path=path)), line
