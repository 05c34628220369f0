"""Training throughput: a conventional PyTorch loop and ttabench's path, side by side.

    python -m benchmarks.throughput                         # all modes, 1 epoch, 3 reps (~10-15 min on 2 cores)
    python -m benchmarks.throughput --modes baseline,bf16-cl --epochs 3 --reps 5 --json out.json
    python -m benchmarks.throughput --profile bf16-cl       # writes benchmarks/profile-cpu.txt

Run from the repository root. Every mode trains ResNet-20 (batch 128, the
closed recipe: SGD momentum 0.9, weight decay 1e-4, lr from CLOSED.lr_at) for
the same number of epochs on the same data, from the same initial weights
(the same seed in every mode of a repetition; repetition i uses seed + i, so
the spread of the accuracy over repetitions is the seed noise):

- ``baseline``: what a typical PyTorch script does, written here: a per-image
  Dataset whose __getitem__ pads, crops, flips and normalises one image in
  Python, a DataLoader with worker processes (shuffle, drop_last), fp32
  eager, NCHW.
- the other modes: ttabench's own path, built by ``launch.worker.workload.build`` and
  timed by ``launch.loop.run`` (uint8 data set in memory, one gather per
  batch for crop+flip, fused normalise): fp32 NCHW, fp32 channels_last,
  bf16 autocast channels_last, and the same two precisions under
  torch.compile. Compilation and warm-up happen before the clock, on random
  input of the same shapes (``launch.warmup``), and are reported apart.

Each mode of each repetition runs in a fresh subprocess, so its peak memory
(VmHWM) is its own and no mode inherits another's caches or threads; the
modes of one repetition run back to back, so a change of machine load hits
all of them alike, and the speed-up is the median of per-repetition ratios.

``--overhead`` (on by default) also runs the real CLI, ``ttabench run``, with
the real Recorder and progress display, and reports the harness's own cost
from summary.json: (control_s + hooks_s) / train_s.
"""

# Over 400 lines: the harness and what its children measure stay in one script that a
# reviewer reads top to bottom (it is not part of the package; tests load it by path).
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, schedule
from torch.utils.data import DataLoader, Dataset
from ttabench.launch import procs
from ttabench.launch.config import RunConfig, run_flags
from ttabench.launch.record.system import cpu_model, native_bf16, usable_cores
from ttabench.launch.worker import comm as comm_mod
from ttabench.launch.worker import context, loop, workload
from ttabench.launch.worker import hooks as hooks_mod
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.recipe import CLOSED
from ttabench.reference_impls.resnet import resnet

from benchmarks import peak

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SUBSET = os.path.join(
    os.path.dirname(REPO), "shared", "data", "cifar10-subset", "cifar-10-batches-py"
)
RESULT_TAG = "THROUGHPUT_RESULT "
BATCH = 128
EVAL_BATCH = 1000


@dataclass(frozen=True)
class Mode:
    name: str
    precision: str = "fp32"
    channels_last: bool = True
    compile: str = "none"
    baseline: bool = False
    help: str = ""


MODES = {
    m.name: m
    for m in (
        Mode(
            "baseline",
            channels_last=False,
            baseline=True,
            help="per-image Dataset + DataLoader workers, fp32 eager NCHW (the conventional loop)",
        ),
        Mode("fp32-nchw", channels_last=False, help="ttabench path, fp32 eager, NCHW"),
        Mode("fp32-cl", help="ttabench path, fp32 eager, channels_last"),
        Mode("bf16-cl", precision="bf16", help="ttabench path, bf16 autocast, channels_last"),
        Mode("compile-fp32-cl", compile="default", help="ttabench path, torch.compile, fp32, channels_last"),
        Mode(
            "compile-bf16-cl",
            precision="bf16",
            compile="default",
            help="ttabench path, torch.compile, bf16 autocast, channels_last",
        ),
        Mode(
            "compile-ro-bf16-cl",
            precision="bf16",
            compile="reduce-overhead",
            help="same, compile mode reduce-overhead (CUDA graphs on a GPU; default mode on a CPU)",
        ),
    )
}
# A CPU has no CUDA graphs: there reduce-overhead is the default mode again, not worth its minutes.
DEFAULT_MODES = {
    "cpu": [m for m in MODES if MODES[m].compile != "reduce-overhead"],
    "cuda": list(MODES),
}


def default_modes(device: str, bf16_native: bool | None) -> list[str]:
    """The device's default modes; on a CPU that emulates bf16 (bf16_native False) the fp32 ones
    only: an emulated bf16 epoch takes many times an fp32 one and measures the emulation."""
    modes = DEFAULT_MODES[device]
    if device == "cpu" and bf16_native is False:
        modes = [m for m in modes if MODES[m].precision != "bf16"]
    return modes


# ---------------------------------------------------------------------------------------
# Measurements common to both paths (run inside the child process)


def _peak_rss_mib() -> float | None:
    """VmHWM of this process: the peak resident set, which torch's allocations count in."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_s(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _load_data(args):
    return cifar10.synthetic() if args.synthetic else cifar10.load(args.data_dir)


# ---------------------------------------------------------------------------------------
# (a) The conventional baseline


class PerImageCifar10(Dataset):
    """CIFAR-10 the way torchvision's dataset + transforms serve it: one image per call,
    HWC uint8 storage, RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize."""

    def __init__(self, images, labels, train: bool):
        self.data = np.ascontiguousarray(images.numpy().transpose(0, 2, 3, 1))  # N x 32 x 32 x 3
        self.targets = labels.tolist()
        self.train = train
        self.mean = torch.tensor(cifar10.MEAN).view(3, 1, 1)
        self.std = torch.tensor(cifar10.STD).view(3, 1, 1)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img = torch.from_numpy(self.data[i]).permute(2, 0, 1)  # CHW uint8
        if self.train:
            img = F.pad(img, (4, 4, 4, 4))
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            img = img[:, dy : dy + 32, dx : dx + 32]
            if torch.rand(1).item() < 0.5:
                img = img.flip(-1)
        x = img.float().div_(255)
        return (x - self.mean) / self.std, self.targets[i]


def run_baseline(args, seed: int) -> dict:
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    data = _load_data(args)
    train_ds = PerImageCifar10(data.train_images, data.train_labels, train=True)
    test_ds = PerImageCifar10(data.test_images, data.test_labels, train=False)
    workers = args.num_workers
    loader = DataLoader(
        train_ds,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
    )
    test_loader = DataLoader(test_ds, batch_size=EVAL_BATCH, num_workers=workers)
    torch.manual_seed(seed)  # the same initial weights as ttabench's build()
    model = resnet(20).to(device)
    opt = CLOSED.sgd(model.parameters())
    steps_per_epoch = len(loader)
    step, train_s, cpu_s = 0, 0.0, 0.0
    for _ in range(args.epochs):
        model.train()
        t0, c0 = time.perf_counter(), _cpu_s() + _cpu_s(resource.RUSAGE_CHILDREN)
        for x, y in loader:  # worker start-up and shutdown are part of a conventional epoch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in opt.param_groups:
                group["lr"] = CLOSED.lr_at(step / steps_per_epoch, BATCH)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss.item()
            step += 1
        sync()
        train_s += time.perf_counter() - t0
        # the loader's workers were reaped at the end of the epoch: their CPU time is in CHILDREN
        cpu_s += _cpu_s() + _cpu_s(resource.RUSAGE_CHILDREN) - c0
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test_loader:
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return {
        "steps": step,
        "samples": step * BATCH,
        "train_s": train_s,
        "accuracy": correct / total,
        "cpu_s": cpu_s,
        "warmup_s": None,
        "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


# ---------------------------------------------------------------------------------------
# (b) ttabench's path: workload.build() + (warm-up) + loop.run()


class ProfileSteps(hooks_mod.Hooks):
    """A loop hook that advances the profiler's schedule once per training step."""

    def __init__(self, prof):
        self.prof = prof

    def step(self, info):
        self.prof.step()


def _run_config(args, seed: int, mode: Mode, **kw) -> RunConfig:
    """The run of one mode, as every ttabench-path measurement (in-process or `ttabench run`) sets it."""
    return RunConfig(
        data_dir=None if args.synthetic else args.data_dir,
        synthetic=args.synthetic,
        seed=seed,
        batch_size=BATCH,
        max_epochs=args.epochs,
        precision=mode.precision,
        compile=mode.compile,
        channels_last=mode.channels_last,
        threads=args.threads,
        eval_batch_size=EVAL_BATCH,
        **kw,
    )


def run_ttabench(args, seed: int, mode: Mode, profile_out: str | None = None) -> dict:
    if profile_out and mode.compile != "none":
        # per-kernel records for Inductor's generated C++ (otherwise one opaque row per graph)
        torch._inductor.config.cpp.enable_kernel_profile = True
    cfg = _run_config(args, seed, mode, device=args.device, progress="none")
    cfg.validate()
    comm = comm_mod.Comm()
    device = context.device_for(cfg, 0)
    autocast_dtype = context.autocast_dtype(cfg.precision, device)
    setup = workload.build(cfg, comm, seed, device, autocast_dtype)
    spec = setup.spec
    warmup_s = setup.resolved["warmup_s"]  # build() compiles and warms up before the clock
    hooks = []
    prof = None
    if profile_out:
        wait, warm, active = 2, 2, args.profile_steps
        spec.max_epochs, spec.max_steps = None, wait + warm + active + 1
        prof = profile(
            activities=[ProfilerActivity.CPU],
            schedule=schedule(wait=wait, warmup=warm, active=active, repeat=1),
        )
        prof.start()
        hooks.append(ProfileSteps(prof))
    c0 = _cpu_s()
    result = loop.run(spec, comm, hooks_mod.HookList(hooks))
    cpu_s = _cpu_s() - c0  # includes the evaluations (small next to training)
    if prof is not None:
        prof.stop()
        _write_profile(profile_out, prof, mode, args, result)
    final = result.curve[-1] if result.curve else {}
    return {
        "steps": result.steps,
        "samples": result.samples,
        "train_s": result.train_time_s,
        "accuracy": final.get("accuracy"),
        "cpu_s": cpu_s,
        "warmup_s": warmup_s,
        "status": result.status,
        "breakdown": result.breakdown,
    }


def _write_profile(path: str, prof, mode: Mode, args, result) -> None:
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=45, max_name_column_width=70)
    steps = args.profile_steps
    head = [
        f"# torch.profiler, ttabench path, mode {mode.name} ({mode.help})",
        f"# command: python -m benchmarks.throughput --profile {mode.name} --profile-steps {steps}"
        f" --threads {args.threads}",
        f"# machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} intra-op threads",
        f"# load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"# {steps} training steps of batch {BATCH} recorded (after 2 skipped and 2 warm-up steps);"
        f" loop train time {result.train_time_s:.2f} s for {result.steps} steps",
        "# sorted by self CPU time (time in the op itself, its children excluded)",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(head) + table + "\n")


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
        peak_rss_mib=_peak_rss_mib(),
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    out["img_s"] = out["samples"] / out["train_s"] if out["train_s"] > 0 else None
    out["s_per_epoch"] = out["train_s"] / args.epochs
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
        cfg = _run_config(args, seed, mode, progress=progress, results_dir=root, system="throughput-bench")
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


# ---------------------------------------------------------------------------------------
# Summary and table


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict], modes: list[str]) -> list[dict]:
    base = {r["seed"]: r["img_s"] for r in runs if r["mode"] == "baseline" and "error" not in r}
    rows = []
    for name in modes:
        ok = [r for r in runs if r["mode"] == name and "error" not in r]
        errors = [r["error"] for r in runs if r["mode"] == name and "error" in r]
        ratios = [r["img_s"] / base[r["seed"]] for r in ok if r["seed"] in base and base[r["seed"]]]
        rows.append(
            {
                "mode": name,
                "help": MODES[name].help,
                "reps": len(ok),
                "errors": errors,
                "img_s": _spread([r["img_s"] for r in ok]),
                "s_per_epoch": _spread([r["s_per_epoch"] for r in ok]),
                "accuracy": _spread([r["accuracy"] for r in ok]),
                "peak_rss_mib": _spread([r["peak_rss_mib"] for r in ok]),
                "warmup_s": _spread([r["warmup_s"] for r in ok]),
                "cpu_s_per_img": _spread([r["cpu_s_per_img"] for r in ok]),
                "speedup": _spread(ratios),
                "flop_s": _spread([r.get("flop_s") for r in ok]),
                "peak_flop_s": _spread([r["peak"]["flop_s"] for r in ok if r.get("peak")]),
                "peak_precision": next((r["peak"]["precision"] for r in ok if r.get("peak")), None),
                "fraction": _spread([r.get("fraction_of_peak") for r in ok]),
                "load1": _spread([r["load_before"][0] for r in ok] + [r["load_after"][0] for r in ok]),
            }
        )
    return rows


def _fmt(s, fmt: str, scale: float = 1.0, spread: bool = True) -> str:
    if s is None:
        return "-"
    med = format(s["median"] * scale, fmt)
    if not spread or s["n"] < 2:
        return med
    return f"{med} [{format(s['min'] * scale, fmt)}-{format(s['max'] * scale, fmt)}]"


def format_table(rows: list[dict]) -> str:
    header = (
        "mode",
        "images/s",
        "GFLOP/s",
        "GEMM peak GFLOP/s",
        "% of peak",
        "s/epoch",
        "test acc %",
        "peak RSS MiB",
        "warm-up s",
        "speed-up",
        "load1",
    )
    lines = []
    for r in rows:
        if not r["reps"]:
            lines.append(
                (r["mode"], "failed: " + (r["errors"][0] if r["errors"] else "?"), *[""] * (len(header) - 2))
            )
            continue
        lines.append(
            (
                r["mode"],
                _fmt(r["img_s"], ".0f"),
                _fmt(r["flop_s"], ".0f", 1e-9, spread=False),
                f"{_fmt(r['peak_flop_s'], '.0f', 1e-9)} {r['peak_precision'] or ''}".strip(),
                _fmt(r["fraction"], ".0f", 100),
                _fmt(r["s_per_epoch"], ".1f"),
                _fmt(r["accuracy"], ".1f", 100),
                _fmt(r["peak_rss_mib"], ".0f", spread=False),
                _fmt(r["warmup_s"], ".0f"),
                _fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                _fmt(r["load1"], ".1f"),
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


# Goals of issue 16 on the 2-core CPU: the fraction of the same-run GEMM peak, per precision.
FRACTION_GOALS = {"fp32": 0.85, "bf16": 0.70}


def fraction_verdicts(rows: list[dict]) -> list[str]:
    """One line per precision: ttabench's best mode in it against that precision's goal."""
    lines = []
    for precision, goal in FRACTION_GOALS.items():
        rows_p = [
            r
            for r in rows
            if r["fraction"] and not MODES[r["mode"]].baseline and MODES[r["mode"]].precision == precision
        ]
        if not rows_p:
            continue
        best = max(rows_p, key=lambda r: r["fraction"]["median"])
        got = best["fraction"]["median"]
        lines.append(
            f"goal {precision} >= {100 * goal:.0f} % of the {precision} GEMM peak: "
            f"{'reached' if got >= goal else 'not reached'} (best: {best['mode']} at {100 * got:.1f} %)"
        )
    return lines


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


def _report(args, rows: list[dict], overhead: list[dict], runs: list[dict]) -> dict:
    """Print the table, the overhead and the goal; returns the overhead summary."""
    print()
    print(format_table(rows))
    print(
        "images/s: training only (evaluation excluded); [min-max] over reps; speed-up: median of "
        "per-rep ratios to the baseline; peak RSS: VmHWM of the training process"
    )
    flops = next((r["flops_per_image"] for r in runs if r.get("flops_per_image")), None)
    if flops:
        print(
            f"GFLOP/s: images/s x {flops / 1e9:.4f} GFLOP per trained image (torch.utils.flop_counter, "
            "forward + backward); GEMM peak: best of an N x N matmul in the mode's precision, measured "
            "in the same process after its training; % of peak: median of per-rep fractions"
        )
    for line in fraction_verdicts(rows):
        print(line)
    ov = {}
    for progress in ("plain", "rich"):
        s = _spread([o["fraction"] for o in overhead if o["progress"] == progress and "error" not in o])
        if s:
            ov[progress] = s
            print(
                f"harness overhead ({args.overhead_mode}, progress {progress}): (control_s + hooks_s) / "
                f"train_s = {_fmt(s, '.2f', 100)} % -> {'<=' if s['max'] <= 0.02 else '>'} 2 %"
            )
    best = max(
        (r for r in rows if r["speedup"] and r["mode"] != "baseline"),
        key=lambda r: r["speedup"]["median"],
        default=None,
    )
    if best:
        verdict = "reached" if best["speedup"]["median"] >= 5 else "not reached"
        print(
            f"goal >= 5x baseline images/s: {verdict} (best: {best['mode']} at "
            f"{best['speedup']['median']:.2f}x)"
        )
    return ov


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.threads = args.threads or usable_cores()
    _resolve_data_dir(args)
    if args.child:
        return child_main(args)
    if args.profile:
        return _profile_main(args)
    bf16_native = native_bf16() if args.device == "cpu" else True
    modes = [m.strip() for m in (args.modes or ",".join(default_modes(args.device, bf16_native))).split(",")]
    modes = [m for m in modes if m]
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
    print(f"start: {_uptime()}", flush=True)
    runs, overhead = _measure(args, modes)
    rows = summarize(runs, modes)
    ov = _report(args, rows, overhead, runs)
    print(f"end: {_uptime()}; wall time {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            everything = {"machine": machine, "args": vars(args), "runs": runs, "summary": rows}
            json.dump(dict(everything, overhead=overhead, overhead_summary=ov), f, indent=1)
    return 0 if all(r["reps"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
