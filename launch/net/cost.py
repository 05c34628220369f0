"""All-reduce cost models and the per-step time they give (pure: no torch).

`ttabench predict` combines what one measured run recorded (compute per
step, the gradient buckets and when each became ready in the backward pass)
with the all-reduce cost of a link and a topology, for any number of
workers p. A link has latency alpha (seconds per message step) and
bandwidth B (bytes/s); n is the buffer's bytes.

ring (Patarasuk & Yuan 2009; what gloo, NCCL's ring and the emulation use):
    T = 2(p-1) alpha + 2(p-1)/p n/B
tree (binary-tree reduce then broadcast, both pipelined in small chunks, as
NCCL's double binary tree; Sanders, Speck & Traeff 2009): the latency grows
with the tree's depth, the bandwidth term does not grow with p:
    T = 2 ceil(log2 p) alpha + 2 n/B
hierarchical (Horovod's hierarchical all-reduce, NCCL's 2-D rings): p = m
nodes x k workers per node; reduce-scatter inside each node over the intra
link, a ring all-reduce across the m nodes (the k shards of n/k travel in
parallel through the node's one inter-node link, so the node moves n bytes'
worth), then an all-gather inside the node:
    T = 2(k-1) alpha_i + 2(k-1)/k n/B_i + 2(m-1) alpha + 2(m-1)/m n/B
and T = 0 for p = 1 in every case. An intra link that is not emulated
(`loopback`) costs nothing.

The other reference algorithms (divisions/algorithms.py) add operations with
their own cost (`op_time`, the same as the emulator charges, Link.op_time):
all_gather of n bytes from each worker (p-1)(alpha + n/B), a point-to-point
send alpha + n/B; PowerSGD's all-reduces of P and Q each pay the ring's
2(p-1) alpha. `predict --algorithm` charges them so
(launch/commands/predict_algorithm.py).

Overlap. Buckets are all-reduced one after another on one link, each
starting when it is ready and the link is free (exactly as the emulator
does); the exposed communication of a step is what finishes after the
backward pass's last bucket was ready. A bucket never takes less than its
all-reduce really took on the measured run's transport (`floor_s`): the
emulation likewise only adds time to a real collective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.launch.net.link import Link

TOPOLOGIES = ("ring", "tree", "hierarchical")
CONTROL_BYTES = 24  # the loop's per-step all-reduce: 3 float64 (slowest clock, non-finite, stop)
DDP_FIRST_BUCKET = 1024**2  # torch DDP's defaults: a 1 MiB first bucket, then 25 MiB buckets
DDP_BUCKET = 25 * 1024**2


def ring_time(nbytes: float, p: int, alpha: float, bandwidth: float) -> float:
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / bandwidth


def tree_time(nbytes: float, p: int, alpha: float, bandwidth: float) -> float:
    if p <= 1:
        return 0.0
    return 2 * math.ceil(math.log2(p)) * alpha + 2 * nbytes / bandwidth


@dataclass(frozen=True)
class Topology:
    kind: str = "ring"  # ring | tree | hierarchical
    per_node: int = 1  # workers per node (hierarchical)
    intra: Link | None = None  # the link inside a node (hierarchical); None or not emulated: free

    def check(self, workers: list[int]) -> None:
        if self.kind not in TOPOLOGIES:
            raise UserError(f"unknown topology {self.kind!r} (one of {', '.join(TOPOLOGIES)})")
        if self.per_node < 1:
            raise UserError(f"--gpus-per-node must be >= 1, got {self.per_node}")
        if self.kind == "hierarchical":
            bad = [p for p in workers if p > self.per_node and p % self.per_node]
            if bad:
                raise UserError(
                    f"hierarchical: {bad[0]} workers is not a whole number of nodes of "
                    f"{self.per_node} (--gpus-per-node)"
                )


def allreduce_time(nbytes: float, p: int, link: Link, topo: Topology = Topology()) -> float:
    """Modelled all-reduce time of an n-byte buffer over p workers."""
    if p <= 1 or not link.emulated:
        return 0.0
    if topo.kind == "ring":
        return ring_time(nbytes, p, link.latency, link.bandwidth)
    if topo.kind == "tree":
        return tree_time(nbytes, p, link.latency, link.bandwidth)
    k = min(topo.per_node, p)
    m = p // k
    intra = 0.0
    if topo.intra is not None and topo.intra.emulated and k > 1:
        # reduce-scatter + all-gather inside the node = the ring formula over k
        intra = ring_time(nbytes, k, topo.intra.latency, topo.intra.bandwidth)
    return intra + ring_time(nbytes, m, link.latency, link.bandwidth)


def bucketize(events: list[dict], first_cap: int = DDP_FIRST_BUCKET, cap: int = DDP_BUCKET) -> list[dict]:
    """Per-gradient ready events -> DDP-like buckets in ready order: a bucket closes once it
    holds `cap` bytes (the first one `first_cap`) and is ready when its last gradient is."""
    buckets, cur, limit = [], None, first_cap
    for e in sorted(events, key=lambda e: e["ready_s"]):
        if cur is None:
            cur = {"bytes": 0, "ready_s": 0.0, "allreduce_real_s": None}
        cur["bytes"] += e["bytes"]
        cur["ready_s"] = e["ready_s"]
        if cur["bytes"] >= limit:
            buckets.append(cur)
            cur, limit = None, cap
    if cur is not None:
        buckets.append(cur)
    return buckets


def exposed_comm(buckets: list[tuple[float, float, float]], backward_s: float) -> float:
    """Communication still running after the backward pass's compute ended.

    `buckets`: (ready_s, model_s, floor_s) with ready times relative to the
    backward start; the link serves one bucket at a time, in ready order.
    """
    free = end = 0.0
    for ready, model_s, floor_s in sorted(buckets):
        free = max(ready, free) + model_s
        end = max(end, free, ready + floor_s)
    return max(0.0, end - backward_s)


def op_time(op: str, nbytes: float, p: int, link: Link) -> float:
    """One operation of the reference algorithms (divisions/algorithms.py) on `link`, its own
    alpha-beta cost (ring schedules; what the emulated network charges, Link.op_time):
    all_reduce 2(p-1) alpha + 2(p-1)/p n/B; all_gather (p-1)(alpha + n/B), n bytes from each
    worker; send alpha + n/B."""
    return link.op_time(op, nbytes, p)


def algorithm_comm_time(messages: list[tuple[str, int]], p: int, link: Link) -> float:
    """A step's operations (algorithms.step_messages) one after another on one link."""
    return sum(op_time(op, n, p, link) for op, n in messages)


@dataclass
class StepProfile:
    """One measured run, per step of its critical (slowest) worker."""

    world: int  # workers of the measured run
    batch_size: int  # per worker
    compute_s: float  # forward + backward + optimizer compute, without exposed comm or straggler
    data_s: float
    control_s: float  # the loop's per-step control all-reduce as measured (incl. waiting for peers)
    hooks_s: float  # side work (recorder, progress)
    backward_s: float  # backward compute: backward start -> last bucket ready
    buckets: list[dict] = field(default_factory=list)  # bytes, ready_s, allreduce_real_s
    use_floor: bool = True  # the run's transport time is a lower bound (no real shaping measured)

    @property
    def grad_bytes(self) -> int:
        return sum(b["bytes"] for b in self.buckets)


def predict_step(
    prof: StepProfile, p: int, link: Link, topo: Topology = Topology(), straggler: float = 1.0
) -> dict:
    """Per-step time of p workers on `link`, and where it goes."""
    items = [
        (
            b["ready_s"],
            allreduce_time(b["bytes"], p, link, topo),
            (b["allreduce_real_s"] or 0.0) if prof.use_floor and p > 1 else 0.0,
        )
        for b in prof.buckets
    ]
    exposed = exposed_comm(items, prof.backward_s) if p > 1 else 0.0
    control = prof.control_s + allreduce_time(CONTROL_BYTES, p, link, topo)
    slow = (straggler - 1.0) * prof.compute_s if p > 1 else 0.0
    step = prof.data_s + prof.compute_s + exposed + control + prof.hooks_s + slow
    return {
        "workers": p,
        "step_time_s": step,
        "compute_s": prof.compute_s,
        "comm_exposed_s": exposed,
        "comm_total_s": sum(i[1] for i in items),
        "straggler_s": slow,
        "other_s": prof.data_s + control + prof.hooks_s,
        "images_per_s": p * prof.batch_size / step,
    }


def scaling_rows(
    prof: StepProfile, workers: list[int], link: Link, topo: Topology = Topology(), straggler: float = 1.0
) -> list[dict]:
    """predict_step for each p, with speed-up and efficiency against one healthy worker."""
    one = predict_step(prof, 1, link, topo)["images_per_s"]
    rows = []
    for p in workers:
        r = predict_step(prof, p, link, topo, straggler)
        r["speedup"] = r["images_per_s"] / one
        r["efficiency"] = r["speedup"] / p
        rows.append(r)
    return rows


def fit_alpha_beta(points: list[tuple[int, float]], p: int) -> tuple[float, float]:
    """Least squares of the ring model t = 2(p-1) alpha + 2(p-1)/p n / B on (n bytes, t seconds).

    Returns (alpha, B). Linear in (alpha, 1/B): t = a + b n with a = 2(p-1) alpha,
    b = 2(p-1)/(p B); where the unconstrained fit gives a < 0, a = 0 and b is
    the least-squares slope through the origin.
    """
    if p < 2:
        raise UserError("fitting a link needs at least 2 workers (1 worker sends nothing)")
    if len({n for n, _ in points}) < 2:
        raise UserError("fitting a link needs at least 2 different sizes (--sizes)")
    a, b = fit_line(points)
    steps = 2 * (p - 1)
    return a / steps, steps / p / b


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares t = a + b x over (x, t) with a >= 0 (where the free line's a < 0: the line
    through the origin) and b > 0."""
    k = len(points)
    mx = sum(n for n, _ in points) / k
    my = sum(t for _, t in points) / k
    sxx = sum((n - mx) ** 2 for n, _ in points)
    b = sum((n - mx) * (t - my) for n, t in points) / sxx
    a = my - b * mx
    if a < 0:  # a negative latency has no meaning: the least-squares line through the origin
        a, b = 0.0, sum(n * t for n, t in points) / sum(n * n for n, _ in points)
    if b <= 0:
        raise UserError("the measured time does not grow with the size: no bandwidth can be fitted")
    return a, b
