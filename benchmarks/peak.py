"""The machine's own yardstick: a GEMM probe, the model's training FLOPs, and the fraction of peak.

A training throughput means little alone on a machine whose limit is not
known; here the limit is measured in the same process, the same precision
and the same thread count as the training it is compared with:

- ``gemm_peak``: the best FLOP/s of an N x N x N matmul (2 N^3 FLOPs) over
  several repetitions, in fp32 or bf16. Dense GEMM is the best case of the
  hardware's matrix units through the same BLAS/oneDNN/cuBLAS stack the
  convolutions use, so it is the practical peak, not a datasheet number.
- ``training_flops_per_image``: the FLOPs of one trained image, counted by
  ``torch.utils.flop_counter`` on a real forward + backward (convolutions,
  matmuls: what the counter knows; batch norm, activations, the loss and the
  optimizer update are not counted, so the fraction slightly flatters nothing
  and charges them as overhead).
- ``fraction_of_peak``: images/s x FLOPs/image / peak FLOP/s.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

PROBE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def best_time(fn, reps: int) -> float:
    """The fastest of `reps` timed calls of fn, after one untimed call (primitive creation,
    allocation, warm start): the yardstick's way of timing a small piece of work."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_flops(n: int) -> int:
    """FLOPs of one n x n by n x n matmul: n^2 outputs, n multiply-adds each."""
    return 2 * n**3


def gemm_peak(precision: str, device="cpu", n: int | None = None, reps: int = 7) -> dict:
    """Best FLOP/s of an n x n matmul in ``precision`` over ``reps`` timed repetitions (after one
    untimed call). n defaults to 2048 on a CPU and 8192 on a GPU (a smaller one is launch-bound there)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = PROBE_DTYPES[precision]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)  # first call: library initialisation, kernel selection
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "precision": precision,
        "n": n,
        "reps": reps,
        "best_s": best,
        "median_s": sorted(times)[len(times) // 2],
        "flop_s": gemm_flops(n) / best,
        "threads": torch.get_num_threads(),
    }


def training_flops_per_image(model: torch.nn.Module, input_shape=(3, 32, 32), batch: int = 4) -> float:
    """FLOPs of one training image: forward + backward of cross-entropy on a batch, / batch.

    Counted on a deep copy (the model's weights, gradients and BN statistics are
    left alone), on the CPU, in fp32: the count depends on shapes only.
    """
    m = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *input_shape), generator=g)
    with FlopCounterMode(display=False) as counter:
        out = m(x)
        torch.nn.functional.cross_entropy(out, torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops() / batch


def achieved_flop_s(img_s: float, flops_per_image: float) -> float:
    return img_s * flops_per_image


def fraction_of_peak(img_s: float, flops_per_image: float, peak_flop_s: float) -> float:
    """The share of the measured peak that training at img_s images/s achieves."""
    return achieved_flop_s(img_s, flops_per_image) / peak_flop_s


def probe_precision(mode_precision: str) -> str:
    """The GEMM precision a mode is compared with: autocast bf16/fp16 runs its matmuls and
    convolutions in that type, fp32 in fp32."""
    return mode_precision if mode_precision in PROBE_DTYPES else "fp32"
