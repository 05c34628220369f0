"""This worker's place in the run, decided before any set-up: backend, ranks, threads,
device, process group, emulated link, the seed all workers agree on, the system."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass

import torch

from ttabench import UserError
from ttabench.divisions import algorithms
from ttabench.launch import system
from ttabench.launch.config import RunConfig
from ttabench.launch.net import lab as netlab
from ttabench.launch.net.link import NOT_APPLIED, Link
from ttabench.launch.worker import comm as comm_mod


@dataclass
class Context:
    comm: comm_mod.Comm
    device: torch.device
    autocast_dtype: torch.dtype | None
    threads: int
    link: Link
    seed: int  # rank 0's (a resumed run replaces it with its checkpoint's)
    system: dict  # system.json
    system_name: str
    bf16_native: bool | None = None  # bf16 autocast on a CPU: whether it computes bf16 in hardware

    @property
    def rank0(self) -> bool:
        return self.comm.rank == 0

    def resolved(self, cfg: RunConfig) -> dict:
        """What config.json's "resolved" says about this process's place in the run."""
        c = self.comm
        return {
            "seed": self.seed,
            "world_size": c.world_size,
            "nodes": c.nodes,
            "local_world_size": c.local_world_size,
            "backend": c.backend,
            "dist_backend": c.dist_backend,
            "device": str(self.device),
            "gpu_math": gpu_math(self.device),
            "threads": self.threads,
            "precision": cfg.precision,
            "bf16_native": self.bf16_native,
            "compile": cfg.compile,
            "system": self.system_name,
            "network": self.link.describe_for(c.world_size),
            "algorithm": cfg.algorithm,
            "algorithm_params": algorithms.resolved_params(cfg.algorithm, cfg.algorithm_params()),
            "network_shaping": netlab.shaping_from_env(),
        }


def detect_backend(requested: str | None) -> str:
    if requested not in ("auto", None):
        return requested
    if "HOROVOD_RANK" in os.environ:
        return "horovod"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "torchrun"
    return "none"


def join(cfg: RunConfig) -> Context:
    """Threads, device, process group, emulated link and seed, in that order."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("HOROVOD_LOCAL_SIZE", 1)))
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("HOROVOD_LOCAL_RANK", 0)))
    # Threads: decided here, before any parallel region runs; torchrun's
    # OMP_NUM_THREADS=1 default would otherwise leave cores idle, and more
    # threads than cores per node would oversubscribe them.
    threads = cfg.threads or max(1, system.usable_cores() // max(1, local_world))
    torch.set_num_threads(threads)
    device = device_for(cfg, local_rank)
    dtype = autocast_dtype(cfg.precision, device)
    comm = comm_mod.init(detect_backend(cfg.backend), cfg.dist_backend, device, cfg.collective_timeout)
    link = cfg.network_link
    comm.emulate_network(link)
    comm.use_algorithm(cfg.algorithm, cfg.algorithm_params())
    seed = agree_seed(comm, cfg.seed)
    desc = system.describe()
    # From the CPU flags system.json records (/proc/cpuinfo is read once).
    native = (
        system.native_bf16(desc["cpu"]["flags"]) if dtype == torch.bfloat16 and device.type == "cpu" else None
    )
    note = bf16_note(device, dtype, native)
    if note and comm.rank == 0:
        print(f"ttabench: warning: {note}", file=sys.stderr, flush=True)
    if link.emulated and comm.world_size == 1:
        print(f"ttabench: note: network {link.name} {NOT_APPLIED}", file=sys.stderr, flush=True)
    return Context(
        comm=comm,
        device=device,
        autocast_dtype=dtype,
        threads=threads,
        link=link,
        seed=seed,
        system=desc,
        system_name=system.system_name(cfg.system, desc),
        bf16_native=native,
    )


def device_for(cfg: RunConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda, but CUDA is not available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        # The shapes are fixed for a whole run: let cuDNN time its algorithms once and keep the
        # fastest. And fp32 means fp32: TF32 tensor-core math (cuDNN's default for convolutions)
        # rounds the inputs to 10 mantissa bits, a precision of its own, so it is off.
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def gpu_math(device: torch.device) -> dict | None:
    """How the GPU computes (config.json's resolved.gpu_math); None on a CPU."""
    if device.type != "cuda":
        return None
    return {
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_convolutions": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs a GPU (use bf16 on CPUs)")
        return torch.float16
    return torch.bfloat16


def bf16_note(device: torch.device, dtype: torch.dtype | None, native: bool | None) -> str | None:
    """A warning for bf16 on a CPU that emulates it (config.json records resolved.bf16_native)."""
    if dtype != torch.bfloat16 or device.type != "cpu" or native is not False:
        return None
    return (
        "--precision bf16 on a CPU without native bf16 (no avx512_bf16 or amx_bf16 in /proc/cpuinfo): "
        "PyTorch emulates it, many times slower than fp32; use --precision fp32 here"
    )


def agree_seed(comm: comm_mod.Comm, seed: int | None) -> int:
    """All workers use rank 0's seed; a fresh random one when none was given."""
    mine = seed if seed is not None else secrets.randbits(31)
    return int(comm.allreduce([float(mine) if comm.rank == 0 else 0.0], op="sum")[0])
