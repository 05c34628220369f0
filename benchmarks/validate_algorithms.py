"""Validate `ttabench predict RUN --algorithm NAME` against measured runs of every algorithm.

    python -m benchmarks.validate_algorithms --out results/algorithms --netlab   # the committed table
    python -m benchmarks.validate_algorithms --out /tmp/v --reps 1 --max-steps 4 --algorithms topk \\
        --networks 100mbit --synthetic                                           # a quick look
    python -m benchmarks.validate_algorithms --out results/algorithms --recompute  # same runs, model again
    python -m benchmarks.validate_algorithms --out results/algorithms --append --first-rep 2 --reps 1 --netlab

Runs from the repository root. Each repetition measures, algorithm after
algorithm, first the algorithm's *base* run (its workers on loopback: 2, or
4 for decentralized, whose ring needs at least 3), then the same algorithm
under each emulated profile and, with `--netlab`, across a real tbf-shaped
link (one single-worker node per host namespace); the networks' order
rotates with the repetition, so no network always runs right after the base.
Every run: ResNet-20, `--threads 1`, `--max-steps` steps (default 96, a
multiple of local SGD's H = 4; runs of 32 steps, about 5 s of training,
measured the same work's compute 20 % apart in runs 10 s apart on a shared
2-core machine), PowerSGD with `--powersgd-start-step 2`.

Each measured point is predicted three ways with the code behind `ttabench
predict --algorithm` (launch/commands/predict_algorithm.py):
- from its base run (the validated number: the algorithm's own compute
  measured once on loopback, the network modelled), averaged over the same
  steps as the measured run (`run_steps`: PowerSGD's two start steps are
  plain all-reduces; `ttabench predict` itself prints the steady state);
- from its own run's compute profile with the modelled link (no measured
  communication enters: this separates the model from the drift of compute
  speed between runs on a shared machine; for topk and powersgd, whose
  hooks block the backward pass, that compute already holds the emulated
  communication of the first bucket, so this one double-counts it);
- from the same repetition's allreduce base run (what a user with only an
  allreduce run gets: that algorithm's own compute not included).
Measured per-step time = summary.json's train_time_s / steps (evaluation
excluded); residual = predicted / measured - 1; the table has medians over
repetitions, the load averages around every run and the CPU.

Writes OUT/validation-runs.json (every run as soon as it ends, with the
measurement's command and load), OUT/predict-validation.md and .json, and
keeps the run folders under OUT/validation-runs/.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from benchmarks import output
from benchmarks import validate_predict as vp
from ttabench.launch import system
from ttabench.launch.commands import predict as predict_cmd
from ttabench.launch.commands import predict_algorithm
from ttabench.launch.net import cost
from ttabench.launch.net.link import PROFILES, Link, parse_rate
from ttabench.launch.usage import comma_list

BASE = "loopback (base)"  # the point of each algorithm's base run (algorithm_scaling reads it too)
WORKERS = {"decentralized": 4}  # the others: 2 (decentralized needs a ring of at least 3)
EXTRA = {"powersgd": ["--powersgd-start-step", "2"]}  # a short run reaches PowerSGD's steady state


def algorithm_flags(name: str) -> list[str]:
    return ["--algorithm", name, "--threads", "1"] + EXTRA.get(name, [])


def points(args, name: str) -> list[tuple[str, list[str], str | None]]:
    """(point, run flags, netlab rate) of one algorithm's measured points besides its base."""
    workers = ["--workers", str(WORKERS.get(name, 2))]
    pts = [(f"emulated {n}", workers + ["--network", n], None) for n in args.networks]
    pts += [(f"netlab tbf {rate}", [], rate) for rate in (args.netlab_rates if args.netlab else [])]
    return pts


def link_for(point: str) -> Link:
    if point.startswith("emulated "):
        return PROFILES[point.split()[1]]
    # tbf shapes the rate only (no sch_netem here, so no added delay): latency 0
    rate = point.split()[2]
    return Link(f"tbf {rate}", parse_rate(rate), 0.0)


def one_rep(args, rep: int, log: dict) -> None:
    """Measure one repetition, adding each run to `log` (saved after every run)."""
    for i, name in enumerate(args.algorithms):
        p = WORKERS.get(name, 2)
        flags = algorithm_flags(name)
        load = os.getloadavg()
        base = _measure(args, f"{name}-base", rep, ["--workers", str(p)] + flags)
        vp.add_run(args, log, _run(name, BASE, base, base, load, rep))
        pts = points(args, name)
        k = (rep + i) % len(pts)
        for point, extra, rate in pts[k:] + pts[:k]:
            load = os.getloadavg()
            folder = _measure(args, f"{name}-{vp._slug(point)}", rep, extra + flags, rate, hosts=p)
            if folder is not None:
                vp.add_run(args, log, _run(name, point, folder, base, load, rep))


def _measure(args, name, rep, extra, rate=None, hosts=2):
    t0 = time.time()
    folder = vp.measure(args, name, rep, extra, rate, hosts)
    print(f"validate_algorithms: {name} r{rep}: {time.time() - t0:.0f} s", flush=True)
    return folder


def _run(name: str, point: str, folder: str, base: str, load_before, rep: int) -> dict:
    return {
        "algorithm": name,
        "point": point,
        "rep": rep,
        "run_dir": vp._rel(folder),
        "base_run": vp._rel(base),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
    }


def _predict(prof, info, name: str, p: int, link: Link, run_steps: int) -> dict:
    """predict_algorithm.predict_step for `name` from one run's profile, as `ttabench predict`
    (its parameters: the run's own when it ran `name`, else the defaults)."""
    name, params = predict_algorithm.choose(name, {}, info["algorithm"], info["algorithm_params"])
    shapes = predict_algorithm.run_shapes(info["comm_bytes_model"], prof, name)
    return predict_algorithm.predict_step(
        prof,
        p,
        link,
        cost.Topology("ring"),
        1.0,
        name=name,
        params=params,
        shapes=shapes,
        same_as_run=name == info["algorithm"],
        run_steps=run_steps,
        sync_wait_s=predict_algorithm.sync_wait(prof, info, name, shapes),
    )


def predicted(run: dict, allreduce_base: str | None) -> dict:
    """One measured run beside its predictions (see the module docstring)."""
    own, info = predict_cmd.load_run(run["run_dir"])
    name, p = run["algorithm"], own.world  # as the run ran (earlier tables: decentralized at 3)
    base, binfo = predict_cmd.load_run(run["base_run"])
    link = binfo["link"] if run["point"] == BASE else link_for(run["point"])
    steps = info["steps"]
    from_base = _predict(base, binfo, name, p, link, steps)
    out = dict(
        run,
        workers=p,
        steps=steps,
        measured_step_s=info["measured_step_s"],
        predicted_step_s=from_base["step_time_s"],
        predicted_comm_s=from_base["comm_exposed_s"],
        base_sync_wait_s=from_base["sync_wait_s"],
        own_predicted_step_s=_predict(own, info, name, p, link, steps)["step_time_s"],
        compute_vs_base=own.compute_s / base.compute_s - 1,
        predict_command=(
            f"ttabench predict {run['base_run']} --algorithm {name} --workers {p} "
            + (f"--network {run['point'].split()[1]}" if "emulated" in run["point"] else "")
            + (f"--bandwidth {run['point'].split()[2]} --latency 0" if "netlab" in run["point"] else "")
        ).strip(),
    )
    out["from_allreduce_step_s"] = None
    if allreduce_base is not None:
        ar, arinfo = predict_cmd.load_run(allreduce_base)
        out["from_allreduce_step_s"] = _predict(ar, arinfo, name, p, link, steps)["step_time_s"]
    return out


def table(all_rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["algorithm"], r["point"]) for r in all_rows):
        rs = [r for r in all_rows if (r["algorithm"], r["point"]) == key]
        m = statistics.median(r["measured_step_s"] for r in rs)
        p = statistics.median(r["predicted_step_s"] for r in rs)
        own = statistics.median(r["own_predicted_step_s"] for r in rs)
        cross = [r["from_allreduce_step_s"] for r in rs if r["from_allreduce_step_s"] is not None]
        loads = [x for r in rs for x in (r["load_before"][0], r["load_after"][0])]
        out.append(
            {
                "algorithm": key[0],
                "point": key[1],
                "workers": rs[0]["workers"],
                "reps": len(rs),
                "measured_step_s": m,
                "predicted_step_s": p,
                "residual": p / m - 1,
                "residual_per_rep": [r["predicted_step_s"] / r["measured_step_s"] - 1 for r in rs],
                "compute_vs_base": statistics.median(r["compute_vs_base"] for r in rs),
                "predicted_comm_s": statistics.median(r["predicted_comm_s"] for r in rs),
                "base_sync_wait_s": statistics.median(r["base_sync_wait_s"] for r in rs),
                "own_residual": own / m - 1,
                "from_allreduce_residual": statistics.median(cross) / m - 1 if cross else None,
                "load_1min_range": [min(loads), max(loads)],
                "within_bound": abs(p / m - 1) <= vp.BOUND,
            }
        )
    return out


def markdown(result: dict) -> str:
    rows = [r for r in result["rows"] if r["point"] != BASE]
    ok = sum(r["within_bound"] for r in rows)
    own_ok = sum(abs(r["own_residual"]) <= vp.BOUND for r in rows)
    loads = [x for r in result["rows"] for x in r["load_1min_range"]]
    drift = [r["compute_vs_base"] for r in rows]
    steady = [r for r in rows if abs(r["compute_vs_base"]) <= vp.BOUND]
    lines = [
        "# `ttabench predict --algorithm`: predicted against measured step time",
        "",
        f"CPU: {result['cpu']} ({result['cores']} cores). Within "
        f"+-{100 * vp.BOUND:.0f} % (medians over repetitions): {ok} of {len(rows)} points predicted "
        f"from the base run, {own_ok} of {len(rows)} predicted from the run's own profile. The "
        f"1-minute load average ranged {min(loads, default=0):.1f}-{max(loads, default=0):.1f} around "
        f"the runs; the measured runs' compute per step differed from their base run's by "
        f"{100 * min(drift, default=0):+.0f} % to {100 * max(drift, default=0):+.0f} % (median per point); "
        f"of the {len(steady)} points whose compute stayed within +-{100 * vp.BOUND:.0f} % of the base "
        f"run's, {sum(r['within_bound'] for r in steady)} are within +-{100 * vp.BOUND:.0f} % from the base run.",
        "",
        "Made by (from the repository root; `benchmarks/validate_algorithms.py` says what each column is):",
        "",
    ]
    for m in result["measurements"]:
        lines.append(
            f"    {' '.join(m['command'])}   # {m['started']}, {m.get('duration_s', 0) / 60:.0f} min, "
            f"load {_load(m['load_average_before'])} -> {_load(m.get('load_average_after'))}"
        )
    lines += [
        "",
        "| algorithm | workers | point | reps | measured ms/step | predicted from base run | residual "
        "| per repetition | compute vs base run | comm predicted ms | of it: base run's sync wait ms "
        "| from its own profile | from the allreduce base run | 1-min load (min-max) | within 10% |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [_table_line(r) for r in result["rows"]]
    return "\n".join(lines) + "\n"


def _table_line(r: dict) -> str:
    reps = ", ".join(f"{100 * x:+.1f}%" for x in r["residual_per_rep"])
    cross = r["from_allreduce_residual"]
    base = r["point"] == BASE
    return (
        f"| {r['algorithm']} | {r['workers']} | {r['point']} | {r['reps']} | "
        f"{1e3 * r['measured_step_s']:.1f} | {1e3 * r['predicted_step_s']:.1f} | "
        f"{100 * r['residual']:+.1f}% | {reps} | {100 * r['compute_vs_base']:+.1f}% | "
        f"{1e3 * r['predicted_comm_s']:.1f} | {1e3 * r['base_sync_wait_s']:.1f} | "
        f"{100 * r['own_residual']:+.1f}% | {'-' if cross is None else f'{100 * cross:+.1f}%'} | "
        f"{r['load_1min_range'][0]:.1f}-{r['load_1min_range'][1]:.1f} | "
        f"{'(self)' if base else vp._yes(r['within_bound'])} |"
    )


def _load(load) -> str:
    return "?" if not load else "/".join(f"{x:.1f}" for x in load)


def main(argv=None) -> int:
    p = vp.parser(
        "python -m benchmarks.validate_algorithms",
        __doc__,
        "output folder (results/algorithms for the committed one)",
        "validation-runs",
        reps=3,
        max_steps=96,
        networks="1gbe,100mbit,20mbit",
        netlab_rates="100mbit",
    )
    p.add_argument("--algorithms", default="allreduce,fp16,powersgd,local-sgd,topk,decentralized")
    args = vp.parse(p, argv)
    args.algorithms = comma_list(args.algorithms)
    log = vp.runs_log(args, argv, p.prog, one_rep)
    ar_bases = {
        r["rep"]: r["run_dir"] for r in log["runs"] if r["point"] == BASE and r["algorithm"] == "allreduce"
    }
    all_rows = [predicted(r, ar_bases.get(r["rep"])) for r in log["runs"]]
    result = {
        "cpu": system.cpu_model(),
        "cores": system.usable_cores(),
        "bound": vp.BOUND,
        "measurements": log["measurements"],
        "rows": table(all_rows),
        "runs": all_rows,
    }
    output.write_table(args.out, "predict-validation", result, markdown(result), "validate_algorithms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
