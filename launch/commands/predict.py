"""`ttabench predict`: what N workers on another network would give, from one measured run.

    ttabench predict RUN_DIR --workers 1,2,4,8,16,64,256,1024 --network 10gbe,1gbe
    ttabench predict RUN_DIR --workers 1:1024:x2 --network mylink.json --topology tree --json
    ttabench predict RUN_DIR --topology hierarchical --gpus-per-node 8 --intra-network 100gbe
    ttabench predict RUN_DIR --straggler 2 --plot speedup.png

A pure reader of the run folder (no torch). From the run's critical worker
(the one with the most compute) it takes, per step: compute, data and
control time, side work, and the backward pass's gradient buckets with the
time each became ready; `launch/net/cost.py` adds the modelled all-reduce
of the chosen topology and link, overlapped with the backward pass. Each
worker is assumed to compute as fast as the measured ones did, with the same
threads and per-worker batch (the compute basis, which the output names).

Another reference algorithm (`--algorithm`, default the run's own) changes
the communication of each step: launch/commands/predict_algorithm.py.

Convergence (the epochs to accuracy at each global batch, from RCPs or the
measured run) is launch/commands/predict_convergence.py's.
"""

from __future__ import annotations

import io
import json
import os

from ttabench import UserError
from ttabench.divisions import algorithms
from ttabench.divisions.results import atomic_write_bytes, number, read_curve, read_json, section
from ttabench.launch.commands import predict_algorithm
from ttabench.launch.commands.predict_convergence import (
    convergence,
    convergence_note,
    epochs_target,
    load_rcps,
)
from ttabench.launch.net import cost
from ttabench.launch.net.link import Link, parse_series
from ttabench.launch.net.link import resolve as resolve_link
from ttabench.launch.record.tables import Column, Table, show
from ttabench.launch.usage import add_command, comma_list

DEFAULT_WORKERS = "1:1024:x2"


def load_run(run_dir: str) -> tuple[cost.StepProfile, dict]:
    """The run's step profile and what else predict needs (link, batch, curve, ...)."""
    if not os.path.isdir(run_dir):
        raise UserError(f"not a run folder: {run_dir}")
    config = read_json(os.path.join(run_dir, "config.json"))
    summary = read_json(os.path.join(run_dir, "summary.json"))
    ranks = section(summary, "time_breakdown").get("per_rank")
    steps = number(summary.get("steps"))
    if not isinstance(ranks, list) or not ranks or not all(_has_profile(r) for r in ranks):
        raise UserError(
            f"{run_dir}: summary.json has no step profile (status {summary.get('status', 'unknown')}; "
            "a failed run, or one made before ttabench recorded it): re-run it with this version"
        )
    if not steps or steps < 2:
        raise UserError(f"{run_dir}: {steps or 0} training step(s); predict needs at least 2")
    algorithm, algorithm_params = algorithms.of_run(summary, config)
    resolved = section(config, "resolved")
    crit = max(ranks, key=lambda r: r["compute_s"] + r.get("straggler_s", 0.0))
    bwd = crit["backward"]
    events = bwd["events"] if bwd["kind"] == "buckets" else cost.bucketize(bwd["events"])
    world = int(resolved.get("world_size") or len(ranks))
    global_batch = int(resolved["global_batch"])
    prof = cost.StepProfile(
        world=world,
        batch_size=global_batch // world,
        compute_s=crit["compute_s"] / steps,
        data_s=crit["data_s"] / steps,
        control_s=crit["control_s"] / steps,
        hooks_s=max(r["hooks_s"] for r in ranks) / steps,  # rank 0's side work delays everyone
        backward_s=bwd["backward_s"] or 0.0,
        buckets=events,
        use_floor=resolved.get("network_shaping") is None,
    )
    net = section(resolved, "network")
    link = Link(
        str(net.get("profile") or "loopback"),
        number(net.get("bandwidth_bytes_per_s")),
        net.get("latency_s") or 0.0,
    )
    cfg = section(config, "config")
    info = {
        "run_dir": run_dir,
        "benchmark": summary.get("benchmark"),
        "dataset": summary.get("dataset"),
        "threads": resolved.get("threads"),
        "device": resolved.get("device"),
        "batch_per_worker": global_batch // world,
        "link": link,
        "shaping": resolved.get("network_shaping"),
        "global_batch": global_batch,
        "train_size": int(section(config, "data").get("train_size") or 0),
        "steps": int(steps),
        "measured_step_s": summary["train_time_s"] / steps,
        "thresholds": cfg.get("thresholds"),
        "target": cfg.get("target"),
        "straggler": cfg.get("straggler"),
        "critical_rank": crit["rank"],
        # the critical rank's communication wait per step, emulated delay included (what
        # predict_algorithm.sync_wait compares with the run's link model)
        "comm_wait_total_step_s": (number(crit.get("comm_wait_s")) or 0.0) / steps,
        "curve": _curve(run_dir),
        "algorithm": algorithm,
        "algorithm_params": algorithm_params,
        "comm_bytes_model": summary.get("comm_bytes_model"),
    }
    return prof, info


def _has_profile(r) -> bool:
    keys = ("compute_s", "data_s", "control_s", "hooks_s")
    return isinstance(r, dict) and all(number(r.get(k)) is not None for k in keys) and "backward" in r


def _curve(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "curve.csv")
    return read_curve(path) if os.path.isfile(path) else []


def parse_workers(text: str) -> list[int]:
    out = parse_series(text, _positive_int, "--workers")
    if any(p < 1 for p in out):
        raise UserError(f"--workers must be >= 1, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--workers takes whole numbers, got {text!r}") from None


def predict(
    prof: cost.StepProfile,
    info: dict,
    links: list,
    workers: list[int],
    topo,
    straggler: float,
    rcps: dict | None = None,
    alg: dict | None = None,
) -> list:
    """Rows per link and worker count; `alg`: predict_algorithm.predict_step's algorithm
    keywords (None: the run's gradient all-reduce, cost.scaling_rows)."""
    info = dict(info, world=prof.world)
    rows = []
    for link in links:
        if alg is None:
            scaled = cost.scaling_rows(prof, workers, link, topo, straggler)
        else:
            scaled = predict_algorithm.scaling_rows(prof, workers, link, topo, straggler, **alg)
        for r in scaled:
            r["network"] = link.name
            r.update(convergence(info, r["workers"], r["step_time_s"], rcps))
            rows.append(r)
    return rows


def compute_basis(info: dict) -> dict:
    """What every row's compute rests on: the measured workers' threads and per-worker batch."""
    return {
        "threads_per_worker": info.get("threads"),
        "batch_per_worker": info["batch_per_worker"],
        "device": info.get("device"),
        "measured_workers": info.get("world"),
    }


def basis_text(info: dict) -> str:
    b = compute_basis(info)
    threads = "?" if b["threads_per_worker"] is None else b["threads_per_worker"]
    return (
        f"compute basis: {threads} thread(s) per worker, batch {b['batch_per_worker']} per worker"
        + (f" on {b['device']}" if b["device"] else "")
        + f", as measured with {b['measured_workers']} worker(s)"
    )


def prediction_table(rows: list[dict], info: dict, topo) -> Table:
    title = (
        f"prediction from {info['run_dir']} (measured: {info['steps']} steps, "
        f"{1e3 * info['measured_step_s']:.1f} ms/step, critical rank {info['critical_rank']}; "
        f"{basis_text(info)}); "
        f"algorithm {info.get('predicted_algorithm') or info.get('algorithm')}; "
        f"topology {topo.kind}" + (f", {topo.per_node} per node" if topo.kind == "hierarchical" else "")
    )
    columns = [
        Column("network", left=True),
        Column("workers"),
        Column("step", "step_time_s", lambda r: f"{1e3 * r['step_time_s']:.1f} ms"),
        Column("exposed comm", "comm_exposed_s", lambda r: f"{1e3 * r['comm_exposed_s']:.1f} ms"),
        Column("img/s", "images_per_s", lambda r: f"{r['images_per_s']:.1f}"),
        Column("speed-up", "speedup", lambda r: f"{r['speedup']:.2f}"),
        Column("efficiency", "efficiency", lambda r: f"{100 * r['efficiency']:.1f}%"),
        Column("epochs to target", "epochs_to_target", _epochs_cell),
        Column(
            "ATTMT", "attmt_s", lambda r: "undefined" if r["attmt_s"] is None else f"{r['attmt_s']:.1f} s"
        ),
    ]
    notes = [convergence_note(info, info.get("rcps"))]
    if info.get("compute"):
        notes.append(f"algorithm {info['predicted_algorithm']}: {info['compute']['note']}")
        notes.append(f"communication: {predict_algorithm.comm_note(info['algorithm_name'])}")
    notes += [f"{r['workers']} worker(s): refused: {r['reason']}" for r in _refused(info.get("refused"))]
    return Table(columns, rows, title=title, notes=notes)


def _refused(workers) -> list[dict]:
    why = "decentralized needs at least 3 workers (a ring with two distinct neighbours)"
    return [{"workers": p, "reason": why} for p in workers or []]


def _epochs_cell(r: dict) -> str:
    if r["epochs_to_target"] is None:
        return "not reached" if r["epochs_source"] else "-"
    source = "RCP" if r["epochs_source"] == "rcp" else "assumed unchanged"
    return f"{r['epochs_to_target']:.2f} ({source})"


def plot(rows: list[dict], path: str, title: str) -> None:
    from matplotlib.figure import Figure  # optional dependency, only for --plot

    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    names = list(dict.fromkeys(r["network"] for r in rows))
    ps = sorted({r["workers"] for r in rows})
    ax.plot(ps, ps, color="0.6", ls="--", lw=1, label="ideal")
    for name in names:
        pts = [(r["workers"], r["speedup"]) for r in rows if r["network"] == name]
        ax.plot([p for p, _ in pts], [s for _, s in pts], marker="o", ms=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("workers")
    ax.set_ylabel("speed-up over one worker (images/s)")
    ax.set_title(title.replace("$", r"\$"), fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue(), "plot")


def _links(args, info: dict) -> list:
    names = comma_list(args.network)
    if not names:
        if args.bandwidth or args.latency:
            return [resolve_link(None, args.bandwidth, args.latency)]
        return [info["link"]]  # the measured run's own link
    return [resolve_link(n, args.bandwidth, args.latency) for n in names]


def _topology(args) -> cost.Topology:
    intra = resolve_link(args.intra_network, None, None) if args.intra_network else None
    return cost.Topology(args.topology, args.gpus_per_node, intra)


def _cmd_predict(args) -> int:
    workers = parse_workers(args.workers)
    topo = _topology(args)
    topo.check(workers)
    if args.straggler is not None and not args.straggler >= 1:
        raise UserError(f"--straggler is a factor >= 1, got {args.straggler}")
    prof, info = load_run(args.run_dir)
    info = dict(info, world=prof.world)
    rcps = load_rcps(args.rcps, info)
    info["rcps"] = rcps
    given = {p.name: getattr(args, p.name) for p in algorithms.PARAMS}
    name, params = predict_algorithm.choose(
        args.algorithm, given, info["algorithm"], info["algorithm_params"]
    )
    predict_algorithm.check_topology(name, topo)
    workers, refused = predict_algorithm.split_workers(name, workers)
    shapes = predict_algorithm.run_shapes(info["comm_bytes_model"], prof, name)
    alg = {
        "name": name,
        "params": params,
        "shapes": shapes,
        "same_as_run": name == info["algorithm"],
        "sync_wait_s": predict_algorithm.sync_wait(prof, info, name, shapes),
    }
    compute = predict_algorithm.compute_note(name, info["algorithm"], shaped=not prof.use_floor)
    info.update(
        predicted_algorithm=algorithms.label(name, params),
        algorithm_name=name,
        refused=refused,
        compute=compute,
    )
    links = _links(args, info)
    straggler = args.straggler
    if straggler is None:  # the run's own straggler, if it had one
        straggler = float(info["straggler"].split(":")[1]) if info["straggler"] else 1.0
    rows = predict(prof, info, links, workers, topo, straggler, rcps, alg)
    if args.plot:
        plot(rows, args.plot, f"{os.path.basename(os.path.normpath(args.run_dir))}: {topo.kind}")
    if args.json:
        out = {
            "run_dir": args.run_dir,
            "topology": topo.kind,
            "per_node": topo.per_node,
            "straggler": straggler,
            "measured_step_s": info["measured_step_s"],
            "critical_rank": info["critical_rank"],
            "run_algorithm": algorithms.label(info["algorithm"], info["algorithm_params"]),
            "algorithm": name,
            "algorithm_params": params,
            "algorithm_compute": compute["algorithm_compute"],
            "algorithm_compute_note": compute["note"],
            "algorithm_comm": predict_algorithm.comm_note(name),
            "refused_workers": _refused(refused),
            "compute_basis": compute_basis(info),
            "rcps": None if rcps is None else rcps["path"],
            "epochs_target": epochs_target(info, rcps),
            "convergence": convergence_note(info, rcps),
            "rows": rows,
        }
        print(json.dumps(out, indent=2))
    else:
        show(prediction_table(rows, info, topo))
    return 0


def add_commands(sub) -> None:
    p = add_command(
        sub,
        "predict",
        _cmd_predict,
        help="predict step time, speed-up and TTA for N workers on any network, from a measured run",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (its summary.json has the step profile)")
    p.add_argument("--workers", default=DEFAULT_WORKERS, help="list or range: 1,2,8 or 1:1024:x2 (default)")
    p.add_argument(
        "--network",
        help="profiles or profile files, comma-separated (default: the run's own link)",
    )
    p.add_argument("--bandwidth", help="a custom link's bandwidth, tc units (overrides the profiles')")
    p.add_argument("--latency", help="a custom link's latency, tc units (overrides the profiles')")
    p.add_argument("--topology", default="ring", help="ring (default), tree or hierarchical")
    p.add_argument("--gpus-per-node", type=int, default=1, help="workers per node (hierarchical)")
    p.add_argument(
        "--intra-network", help="the link inside a node (hierarchical; default: free, not modelled)"
    )
    p.add_argument(
        "--straggler",
        type=float,
        metavar="FACTOR",
        help="one worker computes FACTOR times slower (default: the run's own --straggler, else none)",
    )
    p.add_argument(
        "--rcps",
        metavar="FILE",
        help="reference convergence points for the epochs to target at each global batch "
        "(default: the shipped RCPs when they are for the run's benchmark and data set; "
        "'none', or without RCPs: the epochs are assumed unchanged)",
    )
    p.add_argument(
        "--algorithm",
        help=f"the algorithm to predict, one of {', '.join(algorithms.ALGORITHMS)} (default: the run's own)",
    )
    for param in algorithms.PARAMS:
        p.add_argument(
            param.flag,
            dest=param.name,
            type=int if param.integer else float,
            help=f"{param.help} (default: the run's own when --algorithm is the run's, else "
            f"{param.text(param.default)}; range {param.range_text()})",
        )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", metavar="FILE.png", help="speed-up against workers, one line per network")
