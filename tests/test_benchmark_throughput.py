"""The throughput benchmark: its modes (benchmarks/modes.py), its summary arithmetic
(benchmarks/summary.py), and the command itself, benchmarks/throughput.py, end to end.

The benchmark is not part of the package (it is not in the wheel); it runs
from the repository root as ``python -m benchmarks.throughput``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import modes, summary
from ttabench.launch import system

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(mode, seed, img_s, acc=0.5, **kw):
    r = {
        "mode": mode,
        "seed": seed,
        "img_s": img_s,
        "s_per_epoch": 5000 / img_s,
        "accuracy": acc,
        "peak_rss_mib": 700.0,
        "warmup_s": None,
        "cpu_s_per_img": 0.001,
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 1.0, 1.0],
    }
    r.update(kw)
    return r


def test_speedup_is_the_median_of_per_repetition_ratios():
    runs = [
        _run("baseline", 0, 100.0),
        _run("bf16-cl", 0, 250.0),
        _run("baseline", 1, 200.0),
        _run("bf16-cl", 1, 300.0),  # the load changed: ratio 1.5
        _run("baseline", 2, 100.0),
        _run("bf16-cl", 2, 300.0, warmup_s=4.0),
    ]
    rows = {r["mode"]: r for r in summary.summarize(runs, ["baseline", "bf16-cl"])}
    s = rows["bf16-cl"]["speedup"]
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.5, 3.0, 3)
    assert rows["baseline"]["speedup"]["median"] == 1.0
    assert rows["bf16-cl"]["img_s"] == {"median": 300.0, "min": 250.0, "max": 300.0, "n": 3}
    assert rows["bf16-cl"]["warmup_s"] == {"median": 4.0, "min": 4.0, "max": 4.0, "n": 1}
    assert rows["bf16-cl"]["load1"]["min"] == 1.0 and rows["bf16-cl"]["load1"]["max"] == 2.0


def test_failed_mode_shows_in_the_table_and_has_no_speedup():
    runs = [
        _run("baseline", 0, 100.0),
        {"mode": "compile-fp32-cl", "seed": 0, "error": "exit 1: no C++ compiler"},
    ]
    rows = summary.summarize(runs, ["baseline", "compile-fp32-cl"])
    assert rows[1]["reps"] == 0 and rows[1]["speedup"] is None
    table = summary.format_table(rows)
    assert "failed: exit 1: no C++ compiler" in table
    assert table.splitlines()[0].split()[:2] == ["mode", "images/s"]


def test_modes_cover_the_issue():
    assert list(modes.MODES) == [
        "baseline",
        "fp32-nchw",
        "fp32-cl",
        "bf16-cl",
        "compile-fp32-cl",
        "compile-bf16-cl",
        "compile-ro-bf16-cl",
    ]
    defaults = modes.DEFAULT_MODES
    assert defaults["cpu"] == list(modes.MODES)[:-1] and defaults["cuda"] == list(modes.MODES)
    base = modes.MODES["baseline"]
    assert base.baseline and base.precision == "fp32" and not base.channels_last and base.compile == "none"
    # A CPU that emulates bf16 runs the fp32 modes by default; one with it (or unknown) runs all.
    assert modes.default_modes("cpu", False) == ["baseline", "fp32-nchw", "fp32-cl", "compile-fp32-cl"]
    assert modes.default_modes("cpu", True) == modes.default_modes("cpu", None) == defaults["cpu"]
    assert modes.default_modes("cuda", False) == defaults["cuda"]


def test_help_names_every_mode():
    """The command and every module it imports load; its flags list the modes."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--help"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "10000"},  # one line per flag: no wrap inside a mode's name
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "usage: python -m benchmarks.throughput" in text
    for name, mode in modes.MODES.items():
        assert f"{name} = {mode.help}" in text


STEPS = 3


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~30 s on a quiet 2-core machine
def test_benchmark_command_end_to_end(tmp_path):
    """The README's command on the synthetic set, two modes, cut to a few steps: a table and a JSON."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            "--synthetic",
            "--modes",
            "baseline,fp32-cl",
            "--epochs",
            "1",
            "--reps",
            "1",
            # a few steps check the wiring as well as the full epoch (39 steps) did, at a tenth of the CPU
            "--max-steps",
            str(STEPS),
            "--no-overhead",
            # one thread: the suite runs two tests at once on two cores, where a second thread
            # only waits for a core (and spins while it waits)
            "--threads",
            "1",
            # fp32 and a small GEMM probe: this checks the wiring, not the machine's peak (bf16 is
            # emulated on an AVX2-only CPU: one bf16 epoch and a 2048 bf16 torch.mm took minutes)
            "--probe-n",
            "256",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"cut short: every mode stops after {STEPS} step(s)" in proc.stdout
    assert "speed-up" in proc.stdout and "goal >= 5x" in proc.stdout
    assert "% of peak" in proc.stdout and "goal fp32 >= 85 % of the fp32 GEMM peak" in proc.stdout
    result = json.loads(out.read_text())
    runs = {r["mode"]: r for r in result["runs"]}
    assert set(runs) == {"baseline", "fp32-cl"} and result["args"]["max_steps"] == STEPS
    assert result["machine"]["isa"] and result["machine"]["bf16_native"] == system.native_bf16()
    for r in runs.values():
        assert "error" not in r, r
        assert r["steps"] == STEPS and r["samples"] == STEPS * 128 and r["s_per_epoch"] is None
        assert r["img_s"] > 0 and 0 <= r["accuracy"] <= 1 and r["peak_rss_mib"] > 100
        assert r["seed"] == 0 and r["threads"] >= 1
        # the yardstick, measured in the same process, in the mode's precision
        assert r["peak"]["precision"] == "fp32"
        assert r["peak"]["flop_s"] > 0 and r["flops_per_image"] == 242_421_504
        assert r["fraction_of_peak"] == r["img_s"] * r["flops_per_image"] / r["peak"]["flop_s"]
    assert runs["fp32-cl"]["breakdown"]["train_s"] > 0
