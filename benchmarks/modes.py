"""What the throughput benchmark compares: its modes, the batch sizes every mode trains and
evaluates with, and the run configuration of a mode on ttabench's path.

A mode is a training path (the conventional baseline or ttabench's own), a precision, a memory
layout and a compile mode; ``python -m benchmarks.throughput --help`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttabench.launch.config import RunConfig

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


def run_config(args, seed: int, mode: Mode, **kw) -> RunConfig:
    """The run of one mode, as every ttabench-path measurement (in-process or `ttabench run`) sets it."""
    return RunConfig(
        data_dir=None if args.synthetic else args.data_dir,
        synthetic=args.synthetic,
        seed=seed,
        batch_size=BATCH,
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        precision=mode.precision,
        compile=mode.compile,
        channels_last=mode.channels_last,
        threads=args.threads,
        eval_batch_size=EVAL_BATCH,
        **kw,
    )
