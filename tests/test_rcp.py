"""Reference convergence points: ttabench's rule against mlperf-logging's rcp_checker as the oracle.

The oracle reads the same RCP file and MLPerf result logs (result_N.txt) holding the same
epochs; both must agree on pass/fail, the case (found, interpolated, missing, below the
smallest), the pruned set, the minimum acceptable mean and the normalisation factor.
The oracle knows the number of runs only for MLPerf's own benchmarks, so these records
are named "resnet" (5 runs per submission, the number ttabench uses).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random

import pytest
from mlperf_logging.rcp_checker import rcp_checker as oracle

from ttabench.divisions import rcp

BENCH = "resnet"

# BS 64 converges slower than 128 (pruned: below the fastest), BS 512 slower than the
# line between 256 and 1024 (pruned: above its neighbours' interpolation).
RCPS = {
    "resnet_ref_64": [5.5, 5.75, 6.0, 6.0, 6.25, 6.0, 5.75, 6.25, 6.5, 5.5],
    "resnet_ref_128": [4.0, 4.25, 4.5, 4.5, 4.75, 5.0, 4.25, 4.5, 4.75, 5.0],
    "resnet_ref_256": [5.0, 5.25, 5.5, 5.75, 5.5, 5.25, 6.0, 5.5, 5.25, 5.75],
    "resnet_ref_512": [9.0, 9.5, 9.25, 9.75, 10.0, 9.5, 9.25, 9.0, 9.5, 9.75],
    "resnet_ref_1024": [11.0, 11.5, 12.0, 11.75, 12.25, 11.5, 12.0, 11.25, 11.5, 12.5],
}


def rcp_file(tmp_path, epochs_by_name=RCPS, bench=BENCH) -> str:
    records = {
        name: {
            "Benchmark": bench,
            "BS": int(name.rsplit("_", 1)[1]),
            "Hyperparams": {"target_accuracy": 0.45, "dataset": "cifar10-subset"},
            "Epochs to converge": list(e),
        }
        for name, e in epochs_by_name.items()
    }
    path = tmp_path / "rcps.json"
    path.write_text(json.dumps(records))
    return str(path)


def mllog_text(bench: str, batch: int, epochs) -> str:
    """An MLPerf result log that converged at `epochs` (None: stopped without converging)."""

    def line(key, value, **meta):
        return ":::MLLOG " + json.dumps({"key": key, "value": value, "metadata": meta}) + "\n"

    text = line("submission_benchmark", bench) + line("global_batch_size", batch)
    if epochs is None:
        return text + line("eval_accuracy", 0.1, epoch_num=1.0) + line("run_stop", None, status="aborted")
    return text + line("eval_accuracy", 0.9, epoch_num=epochs) + line("run_stop", None, status="success")


def oracle_verdict(
    tmp_path, rcps_path: str, batch: int, epochs
) -> tuple[bool, str, float, oracle.RCP_Checker]:
    sub = tmp_path / f"sub-{batch}-{random.random():.12f}"
    sub.mkdir()
    for i, e in enumerate(epochs):
        (sub / f"result_{i}.txt").write_text(mllog_text(BENCH, batch, e))
    logging.disable(logging.CRITICAL)  # the oracle logs every step
    try:
        with open(rcps_path) as f:
            passed, msg, norm = oracle.check_directory(
                str(sub), "training", "6.0.0", False, False, rcp_file=f, rcp_pass="pruned_rcps"
            )
        with open(rcps_path) as f:
            checker = oracle.RCP_Checker("training", "6.0.0", BENCH, False, f)
    finally:
        logging.disable(logging.NOTSET)
    return passed, msg, norm, checker


def ours(rcps_path: str, batch: int, epochs) -> dict:
    refs = rcp.references(rcps_path, rcp.load(rcps_path), BENCH)
    return rcp.check(refs, BENCH, batch, list(epochs))


def oracle_record(checker, batch: int) -> dict | None:
    """The (pruned-set) record the oracle judged the submission against, as check_directory finds it."""
    found = checker._find_rcp(batch, "pruned_rcps")
    if found is not None:
        return found
    low = checker._find_top_min_rcp(batch, "pruned_rcps")
    high = checker._find_bottom_max_rcp(batch, "pruned_rcps")
    if low is not None and high is not None:
        return checker._create_interp_rcp(batch, low, high)[1]
    if low is None and high is not None:
        return checker._find_min_rcp("pruned_rcps")
    return None


def assert_agree(tmp_path, rcps_path, batch, epochs) -> tuple[dict, str]:
    passed, msg, norm, checker = oracle_verdict(tmp_path, rcps_path, batch, epochs)
    got = ours(rcps_path, batch, epochs)
    assert got["pass"] is passed, (got, msg)
    if passed:
        assert got["normalization"] == pytest.approx(norm, rel=1e-12)
    if msg == "RCP found":
        assert got["reason"].startswith("RCP found")
    elif msg == "RCP Interpolation":
        assert got["reason"].startswith("RCP interpolated")
    elif msg.startswith("Missing RCP"):
        assert "missing RCP" in got["reason"]
    elif msg.startswith("RCP not found but slower"):
        assert got["reason"].startswith("below the smallest RCP")
    elif msg == "Insufficient convergence":
        assert got["reason"].startswith("insufficient convergence")
    else:
        raise AssertionError(f"unexpected oracle message {msg!r}")
    # The record the verdict rests on: the same mean and minimum acceptable mean.
    record = oracle_record(checker, batch)
    assert (got["rcp"] is None) == (record is None or msg == "Insufficient convergence")
    if got["rcp"] is not None:
        assert got["rcp_mean_epochs"] == pytest.approx(record["RCP Mean"], rel=1e-12)
        assert got["min_acceptable_epochs"] == pytest.approx(
            record["RCP Mean"] / record["Max Speedup"], rel=1e-12
        )
    # The same reference statistics, record by record, and the same pruned set.
    refs = {r.name: r for r in rcp.references(rcps_path, rcp.load(rcps_path), BENCH)}
    for name, rec in checker.rcp_data.items():
        assert refs[name].mean == pytest.approx(rec["RCP Mean"], rel=1e-12)
        assert refs[name].std == pytest.approx(rec["RCP Stdev"], rel=1e-12)
        assert refs[name].min_epochs == pytest.approx(rec["Min Epochs"], rel=1e-12)
    assert sorted(r.name for r in rcp.prune(list(refs.values()))) == sorted(checker.pruned_rcp_data)
    return got, msg


def test_pruning_drops_the_slow_small_batch_and_the_bump(tmp_path):
    path = rcp_file(tmp_path)
    refs = rcp.references(path, rcp.load(path), BENCH)
    assert [r.batch for r in rcp.prune(refs)] == [128, 256, 1024]


@pytest.mark.parametrize(
    "batch, epochs, case",
    [
        (256, [5.5, 5.5, 5.5, 5.5, 5.5], "RCP found"),  # at the reference mean: factor 1
        (256, [5.0, 5.25, 5.25, 5.5, 5.0], "RCP found"),  # a little faster: normalised
        (256, [3.0, 3.0, 3.25, 3.0, 3.5], "RCP found"),  # implausibly fast: fails
        (256, [8.0, 9.0, 8.5, 9.5, 9.0], "RCP found"),  # slower: passes, factor 1
        (384, [7.0, 7.25, 7.5, 7.0, 7.5], "RCP Interpolation"),
        (384, [4.0, 4.25, 4.0, 4.5, 4.25], "RCP Interpolation"),
        (512, [8.0, 8.25, 8.5, 8.0, 8.5], "RCP Interpolation"),  # 512 itself was pruned
        (2048, [20.0, 21.0, 22.0, 20.0, 21.0], "Missing RCP"),
        (32, [6.0, 6.0, 6.25, 6.5, 6.0], "RCP not found but slower"),
        (32, [2.0, 2.25, 2.0, 2.5, 2.0], "Missing RCP"),  # below the smallest and faster
        (64, [4.5, 4.75, 5.0, 4.5, 4.75], "RCP not found but slower"),  # 64 was pruned
        (256, [5.5, 5.75, None, 5.5, 6.0], "RCP found"),  # one run never converged: dropped
        (256, [5.5, None, None, 5.5, 6.0], "Insufficient convergence"),
    ],
)
def test_agrees_with_mlperf_rcp_checker(tmp_path, batch, epochs, case):
    path = rcp_file(tmp_path)
    _, msg = assert_agree(tmp_path, path, batch, epochs)
    assert msg.startswith(case)  # the case named in the parameter is the one exercised


def test_exact_cases_have_the_expected_outcomes(tmp_path):
    path = rcp_file(tmp_path)
    at_mean = ours(path, 256, [5.5] * 5)
    assert at_mean["pass"] and at_mean["normalization"] == 1.0
    faster = ours(path, 256, [5.0, 5.25, 5.25, 5.5, 5.0])
    assert faster["pass"] and faster["normalization"] == pytest.approx(faster["rcp_mean_epochs"] / (15.5 / 3))
    assert faster["normalization"] > 1
    assert not ours(path, 256, [3.0, 3.0, 3.25, 3.0, 3.5])["pass"]
    assert not ours(path, 2048, [20.0] * 5)["pass"]


def test_agrees_on_random_reference_sets(tmp_path):
    rng = random.Random(14)
    for case in range(12):
        batches = sorted(rng.sample([32, 64, 128, 256, 512, 1024, 2048], rng.randint(2, 5)))
        epochs = {}
        for bs in batches:
            centre = 3 + 2 * math.log2(bs / 32) * rng.uniform(0.5, 1.5)
            epochs[f"resnet_ref_{bs}"] = [
                round(centre + rng.gauss(0, 0.6), 3) for _ in range(rng.randint(5, 12))
            ]
        sub = tmp_path / f"case{case}"
        sub.mkdir()
        path = rcp_file(sub, epochs)
        for _ in range(4):
            batch = rng.choice([16, 48, 96, 128, 200, 256, 384, 700, 1024, 1500, 4096])
            centre = 3 + 2 * math.log2(max(batch, 16) / 32) * rng.uniform(0.5, 1.5)
            subm = [round(max(0.25, centre + rng.gauss(0, 0.8)), 3) for _ in range(5)]
            assert_agree(sub, path, batch, subm)


def test_min_acceptable_mean_is_where_the_t_test_turns(tmp_path):
    mean, std, n = 10.0, 1.0, 8
    m = rcp.min_acceptable_mean(mean, std, n)
    assert m < mean
    assert rcp.one_sided_p(m + 2e-4, n, mean, rcp.SUBMISSION_RUNS - 2, std) > rcp.ALPHA
    assert rcp.one_sided_p(m - 2e-4, n, mean, rcp.SUBMISSION_RUNS - 2, std) < rcp.ALPHA
    assert rcp.min_acceptable_mean(mean, 0.0, n) == mean  # no spread: nothing faster is plausible


# --- the commands, on real run folders ---------------------------------------------------


def write_run(
    root, name, *, batch=128, epochs_at=None, bench="resnet20", division="closed", dataset="cifar10-subset"
):
    """A run folder as `ttabench run` leaves it (the files rcp reads), reaching 0.45 at epochs_at."""
    d = root / name
    d.mkdir(parents=True)
    rows, ep = [], 0.0
    while ep < (epochs_at or 3.0) + 1e-9:
        ep = round(ep + 0.25, 6)
        acc = 0.5 if epochs_at is not None and ep >= epochs_at else 0.3
        rows.append([ep, int(ep * 39), int(ep * 39) * batch, ep * 10, ep * 12, acc, 1.5])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "step", "samples", "train_time_s", "total_time_s", "accuracy", "loss"])
    w.writerows(rows)
    (d / "curve.csv").write_text(buf.getvalue())
    summary = {
        "benchmark": bench,
        "division": division,
        "dataset": dataset,
        "synthetic": False,
        "global_batch": batch,
        "status": "success",
        "seed": len(list(root.iterdir())),
    }
    (d / "summary.json").write_text(json.dumps(summary))
    config = {
        "resolved": {"peak_lr": 0.1 * batch / 128, "eval_every_samples": batch * 39 // 4},
        "recipe": {"warmup_epochs": 5.0},
    }
    (d / "config.json").write_text(json.dumps(config))
    (d / "mllog.txt").write_text(mllog_text(bench, batch, epochs_at))
    return d


def reference_runs(tmp_path, batch, centre, n=10):
    root = tmp_path / f"ref{batch}"
    for i in range(n):
        write_run(root, f"r{i}", batch=batch, epochs_at=centre + 0.25 * (i % 4))
    return root


def test_build_writes_a_file_the_official_checker_reads(tmp_path, cli, monkeypatch):
    a, b = reference_runs(tmp_path, 128, 4.0), reference_runs(tmp_path, 256, 6.0)
    out = tmp_path / "rcps.json"
    proc = cli("rcp", "build", str(a), str(b), "--target", "0.45", "-o", str(out), check=True)
    assert "wrote" in proc.stdout
    records = json.loads(out.read_text())
    assert sorted(records) == ["resnet20_ref_128", "resnet20_ref_256"]
    rec = records["resnet20_ref_128"]
    assert rec["BS"] == 128 and rec["Benchmark"] == "resnet20"
    assert sorted(rec["Epochs to converge"]) == sorted(4.0 + 0.25 * (i % 4) for i in range(10))
    assert rec["Hyperparams"]["target_accuracy"] == 0.45
    assert rec["Hyperparams"]["dataset"] == "cifar10-subset"
    # The official checker loads it (its benchmark table needs the runs of "resnet20").
    monkeypatch.setitem(oracle.submission_runs["training"], "resnet20", rcp.SUBMISSION_RUNS)
    with open(out) as f:
        checker = oracle.RCP_Checker("training", "6.0.0", "resnet20", False, f)
    ref = rcp.reference("resnet20_ref_128", rec)
    assert checker.rcp_data["resnet20_ref_128"]["Min Epochs"] == pytest.approx(ref.min_epochs, rel=1e-12)


def test_check_runs_and_numbers_agree(tmp_path, cli):
    path = rcp_file(tmp_path, bench="resnet20")
    sub = tmp_path / "sub"
    for i, e in enumerate([5.0, 5.25, 5.25, 5.5, 5.0]):
        write_run(sub, f"s{i}", batch=256, epochs_at=e)
    by_runs = cli("rcp", "check", str(sub), "--rcps", path, "--json")
    by_numbers = cli(
        "rcp", "check", "--rcps", path, "--benchmark", "resnet20", "--global-batch", "256",
        "--epochs", "5,5.25,5.25,5.5,5", "--json",
    )  # fmt: skip
    assert by_runs.returncode == 0, by_runs.stderr
    a, b = json.loads(by_runs.stdout), json.loads(by_numbers.stdout)
    assert a == b
    for key in ("pass", "benchmark", "global_batch", "submission_mean_epochs", "rcp_mean_epochs",
                "min_acceptable_epochs", "normalization", "reason"):  # fmt: skip
        assert key in a
    assert a["pass"] is True and a["normalization"] > 1
    fast = cli(
        "rcp",
        "check",
        "--rcps",
        path,
        "--benchmark",
        "resnet20",
        "--global-batch",
        "256",
        "--epochs",
        "3,3,3,3,3",
    )
    assert fast.returncode == 1 and fast.stdout.startswith("FAIL: ") and len(fast.stdout.splitlines()) == 1


def _one_error_line(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttabench: error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "content, needle",
    [
        ("not json", "not readable JSON"),
        ("[1, 2]", "JSON object of records"),
        ('{"a": {"Benchmark": "resnet20", "BS": 128, "Hyperparams": {}}}', 'lacks "Epochs to converge"'),
        (
            '{"a": {"Benchmark": "resnet20", "BS": "128", "Hyperparams": {}, "Epochs to converge": [1,2,3]}}',
            '"BS"',
        ),
        (
            '{"a": {"Benchmark": "resnet20", "BS": 128, "Hyperparams": {}, "Epochs to converge": [1, -2, 3]}}',
            "positive",
        ),
        (
            '{"a": {"Benchmark": "resnet20", "BS": 128, "Hyperparams": {}, "Epochs to converge": [1, 2]}}',
            "at least 3",
        ),
    ],
)
def test_malformed_rcp_file_is_one_line(tmp_path, cli, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    proc = cli(
        "rcp",
        "check",
        "--rcps",
        str(path),
        "--benchmark",
        "resnet20",
        "--global-batch",
        "128",
        "--epochs",
        "1,2,3",
    )
    _one_error_line(proc, needle)


def test_bad_sets_are_one_line(tmp_path, cli):
    path = rcp_file(tmp_path, bench="resnet32")
    sub = tmp_path / "sub"
    for i in range(5):
        write_run(sub, f"s{i}", batch=128, epochs_at=4.5)
    _one_error_line(
        cli("rcp", "check", str(sub), "--rcps", path), "no RCP for benchmark resnet20", "resnet32"
    )
    path = rcp_file(tmp_path, bench="resnet20")
    write_run(sub, "s5", batch=256, epochs_at=5.5)
    _one_error_line(cli("rcp", "check", str(sub), "--rcps", path), "mixed global batch")
    other = tmp_path / "full"
    for i in range(5):
        write_run(other, f"s{i}", batch=128, epochs_at=4.5, dataset="cifar10")
    _one_error_line(cli("rcp", "check", str(other), "--rcps", path), "data set cifar10")
    _one_error_line(cli("rcp", "check", str(other), "--rcps", path, "--target", "0.5"), "differs")


def test_runs_that_never_reached_the_target(tmp_path, cli):
    path = rcp_file(tmp_path, bench="resnet20")
    one, two = tmp_path / "one", tmp_path / "two"
    for i, e in enumerate([4.5, 4.5, 4.75, 4.5, None]):
        write_run(one, f"s{i}", batch=128, epochs_at=e)
    for i, e in enumerate([4.5, 4.5, 4.75, None, None]):
        write_run(two, f"s{i}", batch=128, epochs_at=e)
    ok = cli("rcp", "check", str(one), "--rcps", path, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["submission_mean_epochs"] == pytest.approx(
        13.75 / 3
    )  # 4.5, 4.5, 4.75: the fastest and the non-converged run dropped
    bad = cli("rcp", "check", str(two), "--rcps", path)
    assert bad.returncode == 1 and bad.stdout.strip().count("\n") == 0
    assert "2 of 5 runs never reached the target" in bad.stdout
    # building a reference from a run that never converged is refused, in one line
    refs = reference_runs(tmp_path, 128, 4.0, n=9)
    write_run(refs, "r9", batch=128, epochs_at=None)
    _one_error_line(
        cli("rcp", "build", str(refs), "--target", "0.45", "-o", str(tmp_path / "x.json")),
        "never reached the target",
    )
    assert not (tmp_path / "x.json").exists()


def test_build_needs_ten_runs_per_batch_and_closed_runs(tmp_path, cli):
    few = reference_runs(tmp_path, 128, 4.0, n=9)
    out = str(tmp_path / "x.json")
    _one_error_line(cli("rcp", "build", str(few), "--target", "0.45", "-o", out), "9 runs", "at least 10")
    opened = tmp_path / "open"
    write_run(opened, "o", division="open", epochs_at=4.0)
    _one_error_line(cli("rcp", "build", str(opened), "--target", "0.45", "-o", out), "open-division")
    assert not os.path.exists(out)


def test_validate_and_report_apply_the_rcps(tmp_path, cli):
    path = rcp_file(tmp_path, bench="resnet20")
    good, fast = tmp_path / "tree" / "good", tmp_path / "tree" / "fast"
    for i, e in enumerate([4.25, 4.5, 4.5, 4.5, 4.75]):
        write_run(good, f"s{i}", batch=128, epochs_at=e)
    for i in range(5):
        write_run(fast, f"s{i}", batch=256, epochs_at=2.0)
    # give the two sets different configurations, as two real experiments have
    for d in list(good.iterdir()) + list(fast.iterdir()):
        cfg = json.loads((d / "config.json").read_text())
        cfg["config"] = {"benchmark": "resnet20", "batch_size": 128 if d.parent == good else 256}
        (d / "config.json").write_text(json.dumps(cfg))
    proc = cli("validate", str(tmp_path / "tree"), "--no-compliance", "--rcps", path, "--json")
    checks = {os.path.basename(c["path"]): c for c in json.loads(proc.stdout)["rcp"]}
    assert checks["good"]["pass"] is True and checks["fast"]["pass"] is False
    failures = json.loads(proc.stdout)["failures"]
    assert any("fast: RCP check failed: RCP found" in f for f in failures)
    assert not any("good: RCP check" in f for f in failures)
    assert proc.returncode == 1
    _one_error_line(
        cli("validate", str(tmp_path / "tree"), "--rcps", str(tmp_path / "none.json")), "not found"
    )

    rep = cli("report", str(good), "--target", "0.45", "--rcps", path, "--format", "json", check=True)
    (row,) = json.loads(rep.stdout)["rows"]
    expected = rcp.check(
        rcp.references(path, rcp.load(path), "resnet20"), "resnet20", 128, [4.25, 4.5, 4.5, 4.5, 4.75]
    )
    assert row["rcp"] == "pass" and row["rcp_normalization"] == pytest.approx(expected["normalization"])
    assert row["rcp_normalization"] > 1
    assert row["tta_normalized_s"] == pytest.approx(row["tta_s"] * row["rcp_normalization"])
    md = cli("report", str(good), "--target", "0.45", "--rcps", path, check=True).stdout
    assert f"TTA x {row['rcp_normalization']:.4f}" in md


def test_validate_rcps_on_sets_too_small_to_check_warns(tmp_path, cli):
    path = rcp_file(tmp_path, bench="resnet20")
    tree = tmp_path / "tree"
    for name, batch in (("a", 128), ("b", 256)):  # two experiments of one run each
        d = write_run(tree / name, "s0", batch=batch, epochs_at=4.5)
        cfg = json.loads((d / "config.json").read_text())
        cfg["config"] = {"benchmark": "resnet20", "batch_size": batch}
        (d / "config.json").write_text(json.dumps(cfg))
    proc = cli("validate", str(tree), "--no-compliance", "--rcps", path, "--json")
    out = json.loads(proc.stdout)
    # (these hand-made folders fail other checks; none of the failures is the RCPs')
    assert not any("RCP" in f for f in out["failures"]), out["failures"]
    assert [c["checkable"] for c in out["rcp"]] == [False, False]
    said = [
        w for w in out["warnings"] if "RCP check: not checkable" in w and "olympic mean needs at least 3" in w
    ]
    assert len(said) == 2, out["warnings"]


def test_check_warns_when_the_evaluation_cadence_differs_from_the_rcps(tmp_path, cli):
    quarter = 128 * 39 // 4  # write_run's runs: 39 steps an epoch, every quarter epoch by default
    records = {
        "resnet20_ref_128": {
            "Benchmark": "resnet20",
            "BS": 128,
            "Hyperparams": {
                "target_accuracy": 0.45,
                "dataset": "cifar10-subset",
                "eval_every_samples": quarter,
            },
            "Epochs to converge": RCPS["resnet_ref_128"],
        }
    }
    path = tmp_path / "rcps.json"
    path.write_text(json.dumps(records))
    same, epoch = tmp_path / "same", tmp_path / "epoch"
    for i, e in enumerate([4.25, 4.5, 4.5, 4.5, 4.75]):
        write_run(same, f"s{i}", batch=128, epochs_at=e)
        d = write_run(epoch, f"s{i}", batch=128, epochs_at=e)
        cfg = json.loads((d / "config.json").read_text())
        cfg["resolved"]["eval_every_samples"] = 128 * 39  # every epoch
        (d / "config.json").write_text(json.dumps(cfg))
    ok = cli("rcp", "check", str(same), "--rcps", str(path), "--json")
    assert json.loads(ok.stdout)["warnings"] == []
    text = cli("rcp", "check", str(epoch), "--rcps", str(path))
    assert text.returncode == 0, text.stdout  # a warning, not a verdict
    (line,) = [x for x in text.stdout.splitlines() if x.startswith("warning: ")]
    assert f"the runs evaluated every 4992 samples, the RCPs' reference runs every {quarter}" in line
    val = cli("validate", str(epoch), "--no-compliance", "--rcps", str(path), "--json")
    out = json.loads(val.stdout)
    assert not any("RCP" in f for f in out["failures"]), out["failures"]
    assert any("RCP check passed" in w for w in out["warnings"])
    assert any("RCP check: evaluation cadence differs" in w for w in out["warnings"])
