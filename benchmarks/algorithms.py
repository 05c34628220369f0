"""Each distributed algorithm's own compute per step, beside a plain training step.

    python -m benchmarks.algorithms                        # ResNet-20, batch 128, best of 10
    python -m benchmarks.algorithms --reps 20 --json algorithms.json
    python -m benchmarks.algorithms --batch 8 --reps 2                # a quick look

What each reference algorithm (launch/worker/comm_algorithms.py) computes on top of
the training step, on this machine's CPU, for ResNet-20's gradient shapes: the fp16
casts, PowerSGD's projections, orthogonalisation and error feedback, top-k's selection
and scatter, the flattening and averaging of parameters (local SGD, amortised over its
H steps; D-PSGD's (mine + left + right) / 3). The hooks run for real, the very code a
run uses, on one bucket holding every gradient (ResNet-20's 1.1 MB fit DDP's first
25 MB bucket), in a one-process gloo group: its collectives move no bytes, so what is
timed is the algorithm's compute (and a one-rank collective's call overhead, a few
microseconds). D-PSGD's exchange needs neighbours: its averaging arithmetic is timed
alone, with copies of the worker's own parameters in place of the neighbours'.

Each time is the best of ``--reps`` calls (the minimum is what a quiet moment gives,
so a shared machine inflates it least); the plain step is a forward, backward and
SGD step of the model at ``--batch`` images, eager fp32, channels_last, ``--threads``
intra-op threads. The table prints each algorithm's compute in milliseconds and as a
share of the plain step; the CPU model and thread count head it.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from benchmarks import output, peak
from ttabench.divisions import algorithms as spec
from ttabench.launch import system
from ttabench.launch.worker import comm_algorithms
from ttabench.launch.worker.comm import Comm
from ttabench.reference_impls.resnet import DEPTHS, resnet


class Bucket:
    """A DDP gradient bucket holding every gradient of the model (what DDP's hooks see)."""

    def __init__(self, params: list[torch.Tensor]):
        self._params = params
        self._buffer = torch.cat([p.grad.reshape(-1) for p in params])
        self._fresh = self._buffer.clone()

    def refill(self) -> None:
        """The backward pass's gradients again (a hook overwrites the buffer)."""
        self._buffer = self._fresh.clone()

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def set_buffer(self, tensor: torch.Tensor) -> None:
        self._buffer = tensor

    def gradients(self) -> list[torch.Tensor]:
        out, offset = [], 0
        for p in self._params:
            out.append(self._buffer[offset : offset + p.numel()].view(p.shape))
            offset += p.numel()
        return out

    def parameters(self) -> list[torch.Tensor]:
        return self._params

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True


def plain_step(model, batch: int, reps: int) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return peak.best_time(step, reps)


def hook_cost(name: str, params: dict, model, reps: int) -> float:
    """One step's hook (and after-step) compute of algorithm NAME, one-process group."""
    comm = Comm()
    algorithm = comm_algorithms.make(name, params, comm)
    plist = [p for p in model.parameters() if p.requires_grad]
    bucket = Bucket(plist)
    if name == "powersgd":  # past the plain all-reduce steps
        algorithm.state.iter = algorithm.state.start_powerSGD_iter

    def one():
        bucket.refill()
        fut = algorithm.hook(bucket)
        if fut is None:  # allreduce: comm.py's hook divides the bucket and all-reduces it
            bucket.buffer().div_(comm.world_size)
            dist.all_reduce(bucket.buffer())
        else:
            fut.wait()
        if name == "local-sgd":  # one average every H steps: time H steps' after-step calls
            for _ in range(algorithm.params["local_steps"]):
                algorithm.after_step(model)
        elif name != "decentralized":
            algorithm.after_step(model)

    t = peak.best_time(one, reps)
    if name == "local-sgd":
        t /= algorithm.params["local_steps"]
    if name == "decentralized":  # the averaging arithmetic of after_step, neighbours' copies
        mine = comm_algorithms.parameters_to_vector(plist)
        left, right = mine.clone(), mine.clone()

        def average():
            flat = comm_algorithms.parameters_to_vector(plist)
            with torch.no_grad():
                comm_algorithms.vector_to_parameters((flat + left + right) / 3, plist)

        t += peak.best_time(average, reps)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.algorithms", description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=20, choices=DEPTHS, help="ResNet depth (default 20)")
    ap.add_argument("--batch", type=int, default=128, help="images per plain step (default 128)")
    ap.add_argument("--reps", type=int, default=10, help="best of this many calls (default 10)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: usable cores)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.batch < 1:
        ap.error("--reps and --batch must be >= 1")
    threads = args.threads or system.usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = resnet(args.depth, 1).to(memory_format=torch.channels_last)
    step_s = plain_step(model, args.batch, args.reps)  # leaves real gradients on the model
    shapes = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        rows = []
        for name in spec.ALGORITHMS:
            params = spec.resolved_params(name, {})
            t = hook_cost(name, params, model, args.reps)
            rows.append({"algorithm": spec.label(name, params), "compute_ms": 1e3 * t, "share": t / step_s})
    finally:
        dist.destroy_process_group()
    cpu = system.cpu_model()
    out = {
        "cpu": cpu,
        "threads": threads,
        "depth": args.depth,
        "batch": args.batch,
        "reps": args.reps,
        "model_bytes": spec.model_bytes(shapes),
        "plain_step_ms": 1e3 * step_s,
        "algorithms": rows,
    }
    print(f"CPU: {cpu}; {threads} threads; ResNet-{args.depth} ({out['model_bytes']:,} bytes fp32)")
    print(f"plain step (batch {args.batch}, fp32, channels_last): {out['plain_step_ms']:.2f} ms")
    width = max(len(r["algorithm"]) for r in rows)
    print(f"{'algorithm':<{width}}  {'own compute ms/step':>19}  {'of the plain step':>17}")
    for r in rows:
        print(f"{r['algorithm']:<{width}}  {r['compute_ms']:>19.3f}  {100 * r['share']:>16.2f}%")
    output.write_json(args.json, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
