"""`ttabench predict --algorithm NAME`: the step of any reference algorithm (pure: no torch).

Which algorithm and parameters: `--algorithm` (default: the run's own) with
its parameters' flags, checked as `ttabench run` checks them
(divisions/algorithms.py); a parameter not given is the run's own when the
algorithm is the run's, else the algorithm's default.

The step of p workers on a link, from the measured run's step profile
(launch/net/cost.py's StepProfile):

- `allreduce` and `fp16` (DDP communication hooks, one operation per gradient
  bucket): the bucket overlap model of `cost.predict_step`, each bucket
  all-reduced at its own size (fp16: half the fp32 bytes), over the chosen
  topology. The measured transport time of a bucket is a lower bound only
  when the run used the same algorithm.
- `powersgd`, `topk`, `local-sgd`, `decentralized`: the operations of one
  steady-state step (divisions/algorithms.step_messages; PowerSGD after its
  start steps, local SGD the mean over H steps after its warm-up) one after
  another on the link, each at its own alpha-beta cost (`cost.op_time`, what
  the emulated network charges), added to the step without overlap (ring
  schedules only). When the run used the same algorithm without real
  shaping, the run's communication wait per step beyond what its own link's
  model charges for those operations (its *synchronisation wait*: waiting
  for the slowest peer's compute, and work done inside the wait such as the
  averaging) is added to the modelled communication: a slower link adds
  transfer time to that wait, it does not hide it. PowerSGD's and top-k's sizes come from the run's
  parameter shapes (summary.json's comm_bytes_model.param_shapes).

Compute is the run's. What an algorithm computes on top of a step (the fp16
casts, PowerSGD's orthogonalisation, top-k selection, the averaging) is in
that compute only when the run used that algorithm; otherwise the output
says it is not measured and not included, and that the run's own
algorithm's compute is included instead.
"""

from __future__ import annotations

import dataclasses

from ttabench import UserError
from ttabench.divisions import algorithms
from ttabench.launch.net import cost

OVERLAPPED = ("allreduce", "fp16")  # per-bucket hooks modelled with the backward overlap
OWN_COMPUTE = {
    "fp16": "the fp16 casts",
    "powersgd": "PowerSGD's projections and orthogonalisation",
    "topk": "top-k selection and the error memory",
    "local-sgd": "the parameter averaging",
    "decentralized": "the parameter averaging",
}
MIN_DECENTRALIZED = 3


def choose(name: str | None, given: dict, run_name: str, run_params: dict) -> tuple[str, dict]:
    """(algorithm, its resolved parameters). `given`: parameter field -> value or None."""
    name = name or run_name
    # the same checks as `run` (unknown name with did-you-mean, parameter of another
    # algorithm, range); the worker count of decentralized is checked per row
    algorithms.check(name, given, MIN_DECENTRALIZED, "torchrun")
    base = dict(run_params) if name == run_name else {}
    base.update({k: v for k, v in given.items() if v is not None})
    return name, algorithms.resolved_params(name, base)


# Where a run's step profile holds an algorithm's own compute (launch/worker/comm.py):
# the hooks of topk and powersgd block the backward pass, so the run's compute holds their
# selection/orthogonalisation, and also their communication, of every bucket but the last (whose
# hook time the run counts as communication wait); local-sgd's and decentralized's averaging
# runs after the step and the run counts all of it as communication wait, not compute.
BLOCKING_HOOKS = ("topk", "powersgd")
AFTER_STEP = ("local-sgd", "decentralized")


def compute_note(name: str, run_name: str, shaped: bool = False) -> dict:
    """Whether the algorithm's own compute is in the prediction (measured) or not, and what else
    of the run's algorithm the compute holds. `shaped`: the run had real shaping (then its
    communication wait is real transfer, and no synchronisation wait is added)."""
    own, theirs = OWN_COMPUTE.get(name), OWN_COMPUTE.get(run_name)
    parts = []
    if not own:
        status = "none"
    elif name == run_name and name not in AFTER_STEP:
        status = "measured"
        parts.append(f"{name}'s own compute ({own}) measured in the run")
    elif name == run_name and not shaped:
        status = "in the synchronisation wait"
        parts.append(
            f"{name}'s own compute ({own}) measured as part of the run's communication wait, not its "
            "compute: included through the synchronisation wait added to the communication"
        )
    elif name == run_name:
        status = "not measured"
        parts.append(
            f"{name}'s own compute ({own}) not measured: the run counted it as communication "
            "wait, which on its really shaped link is not told apart from transfer; not included"
        )
    else:
        status = "not measured"
        parts.append(f"{name}'s own compute ({own}) not measured (the run used {run_name}): not included")
    if theirs and name != run_name and run_name not in AFTER_STEP:
        parts.append(
            f"the compute includes the run's {run_name} compute ({theirs}), which {name} does not do"
        )
    if run_name in BLOCKING_HOOKS:
        parts.append(
            f"the run's {run_name} hook blocks the backward pass, so its compute also holds the "
            "run's own communication of every gradient bucket but the last (an overestimate by "
            "that much, larger on an emulated link)"
        )
    return {"algorithm_compute": status, "note": "; ".join(parts) or f"{name}: no compute of its own"}


def comm_note(name: str) -> str:
    """How the rows charge the algorithm's communication."""
    if name in OVERLAPPED:
        return f"{name}: each gradient bucket's all-reduce overlapped with the backward pass"
    steady = {"powersgd": " after its start steps", "local-sgd": ", the mean over H steps after its warm-up"}
    return (
        f"{name}: a steady-state step's operations{steady.get(name, '')}, one after another at "
        "their own alpha-beta cost, added to the step (not overlapped)"
    )


def check_topology(name: str, topo: cost.Topology) -> None:
    if name not in OVERLAPPED and topo.kind != "ring":
        raise UserError(
            f"--algorithm {name} is predicted with ring schedules only (its operations' own "
            f"costs); --topology {topo.kind} models allreduce and fp16"
        )


def split_workers(name: str, workers: list[int]) -> tuple[list[int], list[int]]:
    """(predicted, refused) worker counts: decentralized needs a ring of at least 3."""
    if name != "decentralized":
        return workers, []
    ok = [p for p in workers if p >= MIN_DECENTRALIZED]
    bad = [p for p in workers if p < MIN_DECENTRALIZED]
    if not ok:
        raise UserError(
            "--algorithm decentralized needs at least 3 workers (a ring with two distinct "
            f"neighbours); --workers gives {', '.join(map(str, workers))}"
        )
    return ok, bad


def steady_steps(name: str, params: dict, run_steps: int | None = None) -> list[int]:
    """The steps whose mean is the steady state (0-based step numbers); with `run_steps`, the
    first `run_steps` steps instead (what a measured run's mean step holds: PowerSGD's start
    steps, local SGD's warm-up and a last round of fewer than H steps)."""
    if run_steps is not None:
        return list(range(run_steps))
    if name == "powersgd":
        return [int(params["powersgd_start_step"])]
    if name == "local-sgd":
        warm = int(params["local_sgd_warmup_steps"])
        return list(range(warm, warm + int(params["local_steps"])))
    return [0]


def serial_comm_time(name: str, params: dict, shapes, p: int, link, run_steps: int | None = None) -> float:
    """Mean steady-state (or first `run_steps`) time of a step's operations, one after another
    on `link`."""
    steps = steady_steps(name, params, run_steps)
    total = sum(
        cost.algorithm_comm_time(algorithms.step_messages(name, params, shapes, s, p), p, link) for s in steps
    )
    return total / len(steps)


def predict_step(
    prof: cost.StepProfile,
    p: int,
    link,
    topo: cost.Topology,
    straggler: float,
    *,
    name: str,
    params: dict,
    shapes,
    same_as_run: bool,
    run_steps: int | None = None,
    sync_wait_s: float = 0.0,
) -> dict:
    """The step of p workers running `name` on `link` (see the module docstring), with the
    bytes one worker sends in a steady-state step (`comm_bytes_per_step`). `run_steps`: the
    mean over a run's first that many steps instead of the steady state (the validation
    compares it with a measured run's mean step, benchmarks/validate_algorithms.py).
    `sync_wait_s`: the run's synchronisation wait per step (`sync_wait`), added to the serial
    algorithms' modelled communication."""
    if name in OVERLAPPED:
        half = name == "fp16"
        buckets = [dict(b, bytes=b["bytes"] // 2 if half else b["bytes"]) for b in prof.buckets]
        mine = dataclasses.replace(prof, buckets=buckets, use_floor=prof.use_floor and same_as_run)
        r = cost.predict_step(mine, p, link, topo, straggler)
        r["sync_wait_s"] = 0.0  # in the buckets' measured all-reduce floor
    else:
        r = cost.predict_step(dataclasses.replace(prof, buckets=[]), p, link, topo, straggler)
        comm = serial_comm_time(name, params, shapes, p, link, run_steps) if p > 1 else 0.0
        sync = sync_wait_s if p > 1 and same_as_run and prof.use_floor else 0.0
        comm += sync
        r["sync_wait_s"] = sync
        r["comm_exposed_s"] = r["comm_total_s"] = comm
        r["step_time_s"] += comm
        r["images_per_s"] = p * prof.batch_size / r["step_time_s"]
    steps = steady_steps(name, params, run_steps)
    r["comm_bytes_per_step"] = sum(algorithms.step_bytes(name, params, shapes, s, p) for s in steps) / len(
        steps
    )
    return r


def sync_wait(prof: cost.StepProfile, info: dict, name: str, shapes) -> float:
    """The run's communication wait per step (its critical rank, emulated delay included) beyond
    what its own link's model charges for its operations (its own parameters, worker count and
    steps: the mean over the run's steps, as the wait is; not the parameters asked for): the time
    its workers waited for the slowest peer's compute (rank skew; 4 workers time-sharing 2 cores
    waited ~20 ms a step for their neighbours on loopback) and the work a step does inside the
    wait (the averaging of local-sgd and decentralized). An emulated link starts each worker's
    modelled transfer when that worker starts it, so the skew reappears in the next collective;
    a real link's transfer starts when the late peer sends: either way it adds to the transfer.
    0 for another algorithm than the run's, a really shaped run (its wait is real transfer) or
    one worker."""
    if name in OVERLAPPED or name != info["algorithm"] or not prof.use_floor or prof.world < 2:
        return 0.0
    own = algorithms.resolved_params(name, info["algorithm_params"])
    modelled = serial_comm_time(name, own, shapes, prof.world, info["link"], info["steps"])
    return max(0.0, info["comm_wait_total_step_s"] - modelled)


def scaling_rows(prof, workers, link, topo, straggler, **alg) -> list[dict]:
    """predict_step for each p, with speed-up and efficiency against one worker (no
    communication: the same baseline for every algorithm)."""
    one = predict_step(prof, 1, link, topo, 1.0, **alg)["images_per_s"]
    rows = []
    for p in workers:
        r = predict_step(prof, p, link, topo, straggler, **alg)
        r["speedup"] = r["images_per_s"] / one
        r["efficiency"] = r["speedup"] / p
        rows.append(r)
    return rows


def run_shapes(model, prof: cost.StepProfile, name: str) -> list:
    """The run's parameter shapes (`model`: summary.json's comm_bytes_model); where it did not
    record them, one flat tensor of its gradient bytes (enough for the algorithms whose bytes
    depend on S only)."""
    model = model if isinstance(model, dict) else {}
    shapes = model.get("param_shapes")
    if isinstance(shapes, list) and shapes:
        return [tuple(int(d) for d in s) for s in shapes]
    if name in ("powersgd", "topk"):
        raise UserError(
            f"--algorithm {name}: the run recorded no parameter shapes (summary.json "
            "comm_bytes_model.param_shapes), which its bytes depend on: re-run it with this version"
        )
    s = int(model.get("model_bytes") or prof.grad_bytes)
    return [(s // algorithms.FP32,)]
