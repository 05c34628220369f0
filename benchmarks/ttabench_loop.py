"""The throughput benchmark's ttabench-path modes: ttabench's own training, timed by its own loop.

``workload.build`` sets the run up (uint8 data set in memory, one gather per batch for crop+flip,
fused normalise; compilation and warm-up before the clock, on random input of the same shapes,
reported apart as ``warmup_s``), then ``loop.run`` trains and times it. With a profile path, the
loop runs a few steps under torch.profiler instead and writes its table.
"""

from __future__ import annotations

import os

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from benchmarks import rusage
from benchmarks.modes import BATCH, Mode, run_config
from ttabench.launch.record import hooks as hooks_mod
from ttabench.launch.system import cpu_model
from ttabench.launch.worker import comm as comm_mod
from ttabench.launch.worker import context, loop, workload


class ProfileSteps(hooks_mod.Hooks):
    """A loop hook that advances the profiler's schedule once per training step."""

    def __init__(self, prof):
        self.prof = prof

    def step(self, info):
        self.prof.step()


def run_ttabench(args, seed: int, mode: Mode, profile_out: str | None = None) -> dict:
    if profile_out and mode.compile != "none":
        # per-kernel records for Inductor's generated C++ (otherwise one opaque row per graph)
        torch._inductor.config.cpp.enable_kernel_profile = True
    cfg = run_config(args, seed, mode, device=args.device, progress="none")
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
    c0 = rusage.cpu_s()
    result = loop.run(spec, comm, hooks_mod.HookList(hooks))
    cpu_s = rusage.cpu_s() - c0  # includes the evaluations (small next to training)
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
