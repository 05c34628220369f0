"""Training throughput: a conventional PyTorch loop and ttabench's path, side by side.

    python -m benchmarks.throughput                         # all modes, 1 epoch, 3 reps (~10-15 min on 2 cores)
    python -m benchmarks.throughput --modes baseline,bf16-cl --epochs 3 --reps 5 --json out.json
    python -m benchmarks.throughput --profile bf16-cl       # writes benchmarks/profile-cpu.txt

Run from the repository root. Every mode trains ResNet-20 (batch 128, the
closed recipe: SGD momentum 0.9, weight decay 1e-4, lr from CLOSED.lr_at) for
the same number of epochs on the same data, from the same initial weights
(the same seed in every mode of a repetition; repetition i uses seed + i, so
the spread of the accuracy over repetitions is the seed noise):

- ``baseline`` (benchmarks/baseline.py): what a typical PyTorch script does,
  written here: a per-image Dataset whose __getitem__ pads, crops, flips and
  normalises one image in Python, a DataLoader with worker processes
  (shuffle, drop_last), fp32 eager, NCHW.
- the other modes (benchmarks/ttabench_loop.py): ttabench's own path, built by
  ``launch.worker.workload.build`` and timed by ``launch.worker.loop.run``
  (uint8 data set in memory, one gather per batch for crop+flip, fused
  normalise): fp32 NCHW, fp32 channels_last, bf16 autocast channels_last, and
  the same two precisions under torch.compile. Compilation and warm-up happen
  before the clock, on random input of the same shapes
  (``launch.worker.warmup``), and are reported apart.

Each mode of each repetition runs in a fresh subprocess, so its peak memory
(VmHWM) is its own and no mode inherits another's caches or threads; the
modes of one repetition run back to back, so a change of machine load hits
all of them alike, and the speed-up is the median of per-repetition ratios.

``--overhead`` (on by default) also runs the real CLI, ``ttabench run``, with
the real Recorder and progress display, and reports the harness's own cost
from summary.json: (control_s + hooks_s) / train_s.

This module is the command: its flags, the child processes (one per mode
and repetition, ``--child``) and what each measures around its training
(peak memory, the GEMM peak), the overhead runs, and the lines printed as
runs finish. The modes are defined in benchmarks/modes.py; the table and the
goals' verdicts are drawn by benchmarks/summary.py.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time

import torch

from benchmarks import output, peak, rusage
from benchmarks.baseline import run_baseline
from benchmarks.modes import BATCH, MODES, Mode, default_modes, run_config
from benchmarks.summary import report, summarize
from benchmarks.ttabench_loop import run_ttabench
from ttabench.launch import procs
from ttabench.launch.flags import run_flags
from ttabench.launch.system import cpu_model, native_bf16, usable_cores
from ttabench.launch.usage import comma_list
from ttabench.reference_impls.resnet import resnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SUBSET = os.path.join(
    os.path.dirname(REPO), "shared", "data", "cifar10-subset", "cifar-10-batches-py"
)
RESULT_TAG = "THROUGHPUT_RESULT "


# ---------------------------------------------------------------------------------------
# The child process: one mode, one repetition


def child_main(args) -> int:
    torch.set_num_threads(args.threads)
    mode = MODES[args.child]
    seed = args.seed
    load_before = os.getloadavg()
    if mode.baseline:
        out = run_baseline(args, seed)
    else:
        out = run_ttabench(args, seed, mode, profile_out=args.profile_out)
    _add_peak(out, args, mode)
    out.update(
        mode=mode.name,
        seed=seed,
        epochs=args.epochs,
        threads=torch.get_num_threads(),
        peak_rss_mib=rusage.peak_rss_mib(),
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    out["img_s"] = out["samples"] / out["train_s"] if out["train_s"] > 0 else None
    # a run cut short by --max-steps trained no whole epoch
    out["s_per_epoch"] = None if args.max_steps else out["train_s"] / args.epochs
    out["cpu_s_per_img"] = out["cpu_s"] / out["samples"] if out["samples"] else None
    print(RESULT_TAG + json.dumps(out), flush=True)
    return 0


def _subprocess(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[procs.Child, str | None]:
    """Run `cmd` from the repository root with its output kept; (child, error or None)."""
    child, result = procs.run(cmd, cwd=REPO, env=env, capture=True, timeout=timeout)
    if result.interrupted:
        raise KeyboardInterrupt  # Ctrl-C stops the whole benchmark, not just this child
    if result.timed_out:
        return child, f"timed out after {timeout} s"
    if result.code != 0:
        return child, f"exit {result.code}: {(child.stderr.strip().splitlines() or ['(no output)'])[-1]}"
    return child, None


def _add_peak(out: dict, args, mode: Mode) -> None:
    """The yardstick, measured in this process after its training (same threads, same
    precision): the GEMM probe, the model's training FLOPs per image, and the fraction."""
    probe = peak.gemm_peak(peak.probe_precision(mode.precision), args.device, n=args.probe_n)
    flops = peak.training_flops_per_image(resnet(20))
    img_s = out["samples"] / out["train_s"] if out["train_s"] > 0 else None
    out["peak"] = probe
    out["flops_per_image"] = flops
    out["flop_s"] = peak.achieved_flop_s(img_s, flops) if img_s else None
    out["fraction_of_peak"] = peak.fraction_of_peak(img_s, flops, probe["flop_s"]) if img_s else None


def _child(args, mode: str, seed: int, extra=()) -> dict:
    cmd = [
        *(sys.executable, "-m", "benchmarks.throughput", "--child", mode),
        *("--seed", str(seed), "--epochs", str(args.epochs), "--threads", str(args.threads)),
        *("--num-workers", str(args.num_workers), "--device", args.device, *extra),
    ]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.probe_n:
        cmd += ["--probe-n", str(args.probe_n)]
    cmd += ["--synthetic"] if args.synthetic else ["--data-dir", args.data_dir]
    t0 = time.perf_counter()
    child, error = _subprocess(cmd, args.child_timeout)
    for line in child.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            out = json.loads(line[len(RESULT_TAG) :])
            out["wall_s"] = time.perf_counter() - t0
            return out
    error = error or "exit 0 without a result line"
    return {"mode": mode, "seed": seed, "error": error, "stderr_tail": child.stderr[-4000:]}


# ---------------------------------------------------------------------------------------
# Harness overhead through the real CLI


def _overhead_run(args, seed: int, progress: str) -> dict:
    """One `ttabench run` with the real Recorder and progress hooks; (control + hooks) / train."""
    mode = MODES[args.overhead_mode]
    with tempfile.TemporaryDirectory(prefix="ttabench-overhead-") as root:
        # default thresholds: what a user's panel shows
        cfg = run_config(args, seed, mode, progress=progress, results_dir=root, system="throughput-bench")
        cmd = [sys.executable, "-m", "ttabench", "run", *run_flags(cfg)]
        # render the live panel as on a terminal (output is discarded)
        env = {"FORCE_COLOR": "1"} if progress == "rich" else None
        load_before = os.getloadavg()
        _, error = _subprocess(cmd, args.child_timeout, env)
        found = glob.glob(os.path.join(root, "*", "*", "*", "*", "summary.json"))
        if error or not found:
            return {"progress": progress, "seed": seed, "error": error or "no summary.json written"}
        with open(found[0], encoding="utf-8") as f:
            summary = json.load(f)
    b = summary["time_breakdown"]["max_over_ranks"]
    return {
        "progress": progress,
        "seed": seed,
        "mode": mode.name,
        "train_s": b["train_s"],
        "control_s": b["control_s"],
        "hooks_s": b["hooks_s"],
        "data_s": b["data_s"],
        "steps": summary["steps"],
        "fraction": (b["control_s"] + b["hooks_s"]) / b["train_s"],
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def _uptime() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description=(
            "Train ResNet-20 for the same epochs with a conventional PyTorch loop and with ttabench's "
            "path in each precision/compile mode; print images/s, s/epoch, test accuracy, peak "
            "memory and the speed-up over the baseline."
        ),
    )
    p.add_argument(
        "--modes",
        default=None,
        help="comma-separated (default: all on cuda, all but compile-ro-bf16-cl on cpu), from: "
        + "; ".join(f"{m.name} = {m.help}" for m in MODES.values()),
    )
    p.add_argument(
        "--epochs", type=int, default=1, help="epochs per mode (default 1: ~5k images on the subset)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="stop every mode's training after N steps (a quick check of the wiring: "
        "the figures are then no measurement of the machine)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions of every mode (median, min, max)")
    p.add_argument("--seed", type=int, default=0, help="seed of repetition 0; repetition i uses seed + i")
    p.add_argument(
        "--data-dir",
        default=None,
        help="cifar-10-batches-py folder (default: "
        "$TTABENCH_DATA_DIR, else ../shared/data/cifar10-subset/cifar-10-batches-py)",
    )
    p.add_argument("--synthetic", action="store_true", help="use the built-in synthetic data set instead")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: usable cores)")
    p.add_argument("--num-workers", type=int, default=2, help="baseline DataLoader worker processes")
    p.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where every mode trains (default: cpu)"
    )
    p.add_argument(
        "--probe-n",
        type=int,
        default=None,
        help="size N of the N x N GEMM peak probe (default: 2048 on cpu, 8192 on cuda)",
    )
    p.add_argument(
        "--overhead",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the harness's own cost through `ttabench run` (default: on)",
    )
    p.add_argument(
        "--overhead-mode",
        default="bf16-cl",
        choices=[m for m in MODES if m != "baseline"],
        help="mode of the overhead runs (default: the fastest eager one, where the "
        "harness's share is largest)",
    )
    p.add_argument(
        "--profile",
        metavar="MODE",
        choices=[m for m in MODES if m != "baseline"],
        help="instead of the table: profile MODE with torch.profiler and write --profile-out",
    )
    p.add_argument("--profile-steps", type=int, default=10, help="training steps recorded by --profile")
    p.add_argument(
        "--profile-out",
        default=None,
        help="where --profile writes its table (default: benchmarks/profile-cpu.txt)",
    )
    p.add_argument("--json", metavar="PATH", help="also write every run and the summary as JSON")
    p.add_argument("--child-timeout", type=float, default=1800, help="seconds per subprocess")
    p.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    return p


def _resolve_data_dir(args) -> None:
    if args.synthetic:
        return
    d = args.data_dir or os.environ.get("TTABENCH_DATA_DIR") or DEFAULT_SUBSET
    if not os.path.isfile(os.path.join(d, "data_batch_1")):
        sys.exit(
            f"benchmarks.throughput: error: no CIFAR-10 data at {d} "
            "(pass --data-dir DIR or set TTABENCH_DATA_DIR, or use --synthetic)"
        )
    args.data_dir = os.path.abspath(d)


def _profile_main(args) -> int:
    args.profile_out = args.profile_out or os.path.join(REPO, "benchmarks", "profile-cpu.txt")
    print(f"profiling {args.profile} ({_uptime()}) ...", flush=True)
    out = _child(
        args,
        args.profile,
        args.seed,
        ["--profile-out", args.profile_out, "--profile-steps", str(args.profile_steps)],
    )
    if "error" in out:
        print(out.get("stderr_tail", ""), file=sys.stderr)
        print(f"profile failed: {out['error']}", file=sys.stderr)
        return 1
    print(open(args.profile_out, encoding="utf-8").read())
    print(f"written to {args.profile_out} ({_uptime()})")
    return 0


def _measure(args, modes: list[str]) -> tuple[list[dict], list[dict]]:
    """Every mode of every repetition (and the overhead runs), printed as they finish."""
    runs, overhead = [], []
    for rep in range(args.reps):
        seed = args.seed + rep
        for name in modes:
            _keep(runs, _child(args, name, seed), rep, f"{name:16s}", _describe_mode)
        for progress in ("plain", "rich") if args.overhead else ():
            _keep(
                overhead,
                _overhead_run(args, seed, progress),
                rep,
                f"overhead/{progress}:",
                _describe_overhead,
            )
    return runs, overhead


def _keep(into: list, r: dict, rep: int, label: str, describe) -> None:
    r["rep"] = rep
    into.append(r)
    print(f"  rep {rep} {label} " + (f"FAILED: {r['error']}" if "error" in r else describe(r)), flush=True)


def _describe_mode(r: dict) -> str:
    warm = f", warm-up {r['warmup_s']:.1f} s" if r.get("warmup_s") else ""
    frac = f"  {100 * r['fraction_of_peak']:.0f} % of {r['peak']['precision']} peak" if r.get("peak") else ""
    return (
        f"{r['img_s']:7.0f} img/s{frac}  acc {100 * r['accuracy']:5.1f}%  "
        f"peak {r['peak_rss_mib']:.0f} MiB{warm}  (load {r['load_before'][0]:.1f})"
    )


def _describe_overhead(o: dict) -> str:
    return (
        f"{100 * o['fraction']:.2f}% of train time "
        f"(control {o['control_s']:.3f} s + hooks {o['hooks_s']:.3f} s / {o['train_s']:.1f} s)"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        print(
            f"benchmarks.throughput: error: --max-steps must be >= 1, got {args.max_steps}", file=sys.stderr
        )
        return 2
    args.threads = args.threads or usable_cores()
    _resolve_data_dir(args)
    if args.child:
        return child_main(args)
    if args.profile:
        return _profile_main(args)
    bf16_native = native_bf16() if args.device == "cpu" else True
    modes = comma_list(args.modes) or list(default_modes(args.device, bf16_native))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit(
            f"benchmarks.throughput: error: unknown mode(s) {', '.join(unknown)}; "
            f"choose from {', '.join(MODES)}"
        )
    started = time.time()
    machine = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "data": "synthetic" if args.synthetic else args.data_dir,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native,
    }
    print(
        f"ResNet-20, batch {BATCH}, {args.epochs} epoch(s), {args.reps} rep(s), {args.threads} threads, "
        f"{machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}",
        flush=True,
    )
    if bf16_native is False:
        print(
            f"this CPU has no native bf16 (no avx512_bf16/amx_bf16; PyTorch's kernels: {machine['isa']}): "
            "PyTorch emulates bf16, so "
            + (
                "the bf16 modes are left out (name them in --modes to run them anyway)"
                if not args.modes
                else "the bf16 figures below measure the emulation, not the hardware"
            ),
            flush=True,
        )
    if args.max_steps:
        print(f"cut short: every mode stops after {args.max_steps} step(s) (--max-steps): no measurement")
    print(f"start: {_uptime()}", flush=True)
    runs, overhead = _measure(args, modes)
    rows = summarize(runs, modes)
    ov = report(rows, overhead, runs, args.overhead_mode)
    print(f"end: {_uptime()}; wall time {time.time() - started:.0f} s")
    everything = {"machine": machine, "args": vars(args), "runs": runs, "summary": rows}
    output.write_json(args.json, dict(everything, overhead=overhead, overhead_summary=ov), indent=1)
    return 0 if all(r["reps"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
