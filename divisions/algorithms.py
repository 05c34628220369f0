"""The reference distributed algorithms of the closed division: parameters, communication
pattern, and bytes sent per worker per step (pure: no torch).

MLBench's closed division prescribes "a limited number of prescribed standard
algorithms, according to strict reference implementations provided, including
the precise communication patterns". Each algorithm here names the operations
one worker performs in one step (``messages``), on which tensors, and how many
bytes it hands to each; the bytes a worker *sends* follow from the operation's
ring schedule (what gloo and NCCL's ring run, and what the emulated network
charges, launch/net/cost.py):

    all_reduce of n bytes over N workers:  2(N-1)/N x n sent   (reduce-scatter + all-gather)
    all_gather of n bytes from each worker: (N-1) x n sent      (every other worker's part passes on)
    send (point-to-point) of n bytes:        n sent

A model is described by its parameter shapes (fp32): S = 4 x (number of
parameters) bytes. Every formula below is a function of those shapes, N and
the algorithm's parameters; the worker counts the bytes it really hands to
each operation (launch/worker/algorithms.py), and a test checks that the two
agree. Only the gradient or parameter exchange of training counts: the
loop's per-step control all-reduce (24 bytes) and evaluation do not.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from ttabench import UserError

FP32 = 4
INDEX = 4  # top-k indices travel as int32
ALGORITHMS = ("allreduce", "fp16", "powersgd", "local-sgd", "decentralized", "topk")
DEFAULT = "allreduce"
HOROVOD = ("allreduce", "fp16")  # the others need torch.distributed (comm hooks, point-to-point)
OPS = ("all_reduce", "all_gather", "send")

# Parameters: config field -> (algorithm, default, low, high, integer?); ranges inclusive unless
# the limit's `open` flag says otherwise. Documented in the README's table.
POWERSGD_MIN_COMPRESSION_RATE = 2  # torch's default: a matrix is compressed if (n+m) r x 2 < n m


@dataclass(frozen=True)
class Param:
    name: str  # RunConfig field
    algorithm: str
    default: float
    low: float
    high: float
    integer: bool
    low_open: bool = False
    high_open: bool = False
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def doc(self) -> str:
        """The flag's help text: what it does, its default and range."""
        return f"{self.help} (default {self.text(self.default)}, range {self.range_text()})"

    def text(self, value) -> str:
        return str(int(value)) if self.integer else f"{value:g}"

    def range_text(self) -> str:
        lo = f"({self.text(self.low)}" if self.low_open else f"[{self.text(self.low)}"
        hi = f"{self.text(self.high)})" if self.high_open else f"{self.text(self.high)}]"
        return f"{lo}, {hi}"

    def check(self, value) -> str | None:
        """Why `value` is out of range (None if it is fine)."""
        ok_type = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (not self.integer and not math.isfinite(value)):
            kind = "an integer" if self.integer else "a number"
            return f"{self.flag} must be {kind} in {self.range_text()}, got {value!r}"
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        if too_low or too_high:
            return f"{self.flag} must be in {self.range_text()}, got {value!r}"
        return None


PARAMS = (
    Param(
        "powersgd_rank", "powersgd", 2, 1, 64, True,
        help="PowerSGD: rank r of the low-rank approximation of each gradient matrix",
    ),
    Param(
        "powersgd_start_step", "powersgd", 10, 2, 10**9, True,
        help="PowerSGD: plain all-reduce for the first this many steps (torch needs >= 2 with "
        "error feedback and warm start)",
    ),
    Param(
        "local_steps", "local-sgd", 4, 1, 1024, True,
        help="local SGD: H local steps between two all-reduce averages of the parameters",
    ),
    Param(
        "local_sgd_warmup_steps", "local-sgd", 0, 0, 10**9, True,
        help="local SGD: plain gradient all-reduce for the first this many steps",
    ),
    Param(
        "topk_ratio", "topk", 0.01, 0.0, 1.0, False, low_open=True, high_open=True,
        help="top-k: fraction of each gradient tensor's entries sent each step",
    ),
)  # fmt: skip
PARAM_BY_NAME = {p.name: p for p in PARAMS}

PATTERNS = {
    "allreduce": "every step: all_reduce (sum, then / N) of the fp32 gradients, in DDP's buckets",
    "fp16": "every step: gradients cast to fp16, all_reduce of the fp16 buckets, cast back",
    "powersgd": "first start steps as allreduce; then every step, per bucket: all_reduce of the "
    "uncompressed tensors (vectors, small matrices) in fp32, all_reduce of P (n x r per matrix), "
    "all_reduce of Q (m x r per matrix); error feedback and warm start",
    "local-sgd": "first warm-up steps as allreduce; then H local steps without communication and, "
    "after every H-th, all_reduce (mean) of the fp32 parameters in one flat buffer; momentum "
    "buffers stay local",
    "decentralized": "every step: a local SGD step, then send the fp32 parameters to both ring "
    "neighbours (rank-1, rank+1 mod N), receive theirs, average the three with weight 1/3 each",
    "topk": "every step, per bucket: gradient + error memory, the k = ceil(ratio x n) largest |entries| "
    "of each tensor; all_gather of their fp32 values and all_gather of their int32 indices",
}

FORMULAS = {
    "allreduce": "2(N-1)/N x S",
    "fp16": "(N-1)/N x S",
    "powersgd": "2(N-1)/N x (U + 4r x sum(n_i + m_i)) after the start steps (S before)",
    "local-sgd": "2(N-1)/N x S on every H-th step (and every warm-up step), 0 otherwise",
    "decentralized": "2 x S",
    "topk": "(N-1) x 8 x sum(ceil(ratio x numel_i))",
}


def check_name(name) -> None:
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(str(name), ALGORITHMS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"unknown --algorithm {name!r}{hint}; one of {', '.join(ALGORITHMS)}")


def check(algorithm: str, params: dict, workers: int, backend: str) -> None:
    """Raise UserError for an algorithm or parameter that can never run (one line each).

    `params`: the parameter fields a user set (None = left at the default); `backend` the
    launch backend (none, torchrun, horovod)."""
    check_name(algorithm)
    for name, value in params.items():
        p = PARAM_BY_NAME[name]
        if value is None:
            continue
        if p.algorithm != algorithm:
            raise UserError(f"{p.flag} is a parameter of --algorithm {p.algorithm}, not {algorithm}")
        broken = p.check(value)
        if broken:
            raise UserError(broken)
    if backend == "horovod" and algorithm not in HOROVOD:
        raise UserError(
            f"--algorithm {algorithm} runs under torchrun (torch.distributed); Horovod runs "
            f"{' and '.join(HOROVOD)}"
        )
    if algorithm == "decentralized" and workers < 3:
        raise UserError(
            f"--algorithm decentralized needs at least 3 workers (a ring with two distinct "
            f"neighbours), got {workers}"
        )


# The worker-side state of these algorithms (error memories, PowerSGD's step count, each
# worker's own model) is not in a checkpoint, and compilation's warm-up steps would advance it.
_NO_CHECKPOINT = ("powersgd", "local-sgd", "decentralized", "topk")
_NO_COMPILE = ("powersgd", "topk")


def check_combination(algorithm: str, *, compile: str, checkpoints: bool) -> None:
    """What the worker side of an algorithm does not support yet (one UserError line)."""
    if checkpoints and algorithm in _NO_CHECKPOINT:
        raise UserError(
            f"--algorithm {algorithm} keeps per-worker state that checkpoints do not hold yet: "
            "leave out --checkpoint-every and --max-restarts"
        )
    if compile != "none" and algorithm in _NO_COMPILE:
        raise UserError(
            f"--algorithm {algorithm} with --compile is not supported yet (the compilation warm-up "
            "would advance its state): use --compile none"
        )


def resolved_params(algorithm: str, params: dict) -> dict:
    """The algorithm's own parameters with defaults filled in (what config.json and mllog record)."""
    return {
        p.name: (params.get(p.name) if params.get(p.name) is not None else p.default)
        for p in PARAMS
        if p.algorithm == algorithm
    }


# -- a run's algorithm, as its files record it


def of_run(summary, config) -> tuple[str, dict]:
    """(algorithm, its parameters) of a run folder's summary.json and config.json; a run from a
    version before --algorithm trained with allreduce."""
    s = summary if isinstance(summary, dict) else {}
    c = config if isinstance(config, dict) else {}
    resolved = c.get("resolved") if isinstance(c.get("resolved"), dict) else {}
    given = c.get("config") if isinstance(c.get("config"), dict) else {}
    name = s.get("algorithm") or resolved.get("algorithm") or given.get("algorithm") or DEFAULT
    params = s.get("algorithm_params") or resolved.get("algorithm_params") or {}
    return str(name), (params if isinstance(params, dict) else {})


def label(name: str, params: dict) -> str:
    """'allreduce', 'powersgd powersgd_rank=2 powersgd_start_step=10': what RCPs and reports
    tell algorithms apart by."""
    return " ".join(
        [name]
        + [
            f"{k}={params[k]:g}" if isinstance(params[k], (int, float)) else f"{k}={params[k]}"
            for k in sorted(params)
        ]
    )


def run_label(summary, config) -> str:
    return label(*of_run(summary, config))


# -- what one step sends ----------------------------------------------------------------


def numel(shape) -> int:
    return math.prod(shape)


def model_bytes(shapes) -> int:
    """S: the fp32 parameters' bytes."""
    return FP32 * sum(numel(s) for s in shapes)


def powersgd_split(shapes, rank: int) -> tuple[int, int, int]:
    """torch's powerSGD_hook per tensor: viewed as an n x m matrix (n = shape[0]), compressed
    with rank r' = min(n, m, r) if (n+m) r' x 2 < n m. Returns (uncompressed elements,
    elements of all Ps = sum n r', elements of all Qs = sum m r')."""
    unc = ps = qs = 0
    for s in shapes:
        n = s[0] if len(s) else 1
        m = numel(s) // n if n else 0
        r = min(n, m, rank)
        if (n + m) * r * POWERSGD_MIN_COMPRESSION_RATE < n * m:
            ps, qs = ps + n * r, qs + m * r
        else:
            unc += numel(s)
    return unc, ps, qs


def topk_count(n: int, ratio: float) -> int:
    """Entries of an n-element tensor top-k sends: ceil(ratio x n), at least 1, at most n."""
    return min(n, max(1, math.ceil(ratio * n - 1e-9)))


def step_messages(algorithm: str, params: dict, shapes, step: int, world: int) -> list[tuple[str, int]]:
    """The (op, bytes handed) of step `step` (0-based) of one worker, summed per op kind and
    tensor role (bucketing splits them into more messages; the bytes are the same)."""
    p = resolved_params(algorithm, params)
    s = model_bytes(shapes)
    if world <= 1:
        return []
    if algorithm == "allreduce":
        return [("all_reduce", s)]
    if algorithm == "fp16":
        return [("all_reduce", s // 2)]
    if algorithm == "powersgd":
        if step < p["powersgd_start_step"]:
            return [("all_reduce", s)]
        unc, ps, qs = powersgd_split(shapes, p["powersgd_rank"])
        return [("all_reduce", FP32 * unc), ("all_reduce", FP32 * ps), ("all_reduce", FP32 * qs)]
    if algorithm == "local-sgd":
        warm = p["local_sgd_warmup_steps"]
        if step < warm:
            return [("all_reduce", s)]
        return [("all_reduce", s)] if (step - warm + 1) % p["local_steps"] == 0 else []
    if algorithm == "decentralized":
        return [("send", s), ("send", s)]
    if algorithm == "topk":
        k = sum(topk_count(numel(sh), p["topk_ratio"]) for sh in shapes)
        return [("all_gather", FP32 * k), ("all_gather", INDEX * k)]
    check_name(algorithm)
    raise AssertionError(algorithm)


def sent_bytes(op: str, nbytes: float, world: int) -> float:
    """Bytes one worker sends for one operation it hands `nbytes` to (ring schedules)."""
    if world <= 1:
        return 0.0
    if op == "all_reduce":
        return 2 * (world - 1) / world * nbytes
    if op == "all_gather":
        return (world - 1) * nbytes
    if op == "send":
        return float(nbytes)
    raise ValueError(f"unknown op {op!r} (one of {', '.join(OPS)})")


def step_bytes(algorithm: str, params: dict, shapes, step: int, world: int) -> float:
    """Bytes one worker sends in step `step`."""
    return sum(sent_bytes(op, n, world) for op, n in step_messages(algorithm, params, shapes, step, world))


def bytes_per_step(algorithm: str, params: dict, shapes, steps: int, world: int) -> float:
    """The formula evaluated for a run of `steps` steps: the mean over its steps of the bytes one
    worker sends (algorithms whose steps differ, local SGD and PowerSGD's start, average them)."""
    if steps < 1:
        return 0.0
    if algorithm in ("allreduce", "fp16", "decentralized", "topk"):
        return step_bytes(algorithm, params, shapes, 0, world)
    return sum(step_bytes(algorithm, params, shapes, i, world) for i in range(steps)) / steps
