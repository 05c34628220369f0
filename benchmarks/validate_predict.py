"""Validate `ttabench predict` against measured runs on this machine, and plot its scaling.

    python -m benchmarks.validate_predict --out results/predict                  # emulated links
    python -m benchmarks.validate_predict --out results/predict --netlab         # + real tbf (root)
    python -m benchmarks.validate_predict --out /tmp/v --reps 1 --max-steps 4 --networks 100mbit
    python -m benchmarks.validate_predict --out results/predict --recompute       # same runs, model again
    python -m benchmarks.validate_predict --out results/predict --append --first-rep 3 --reps 1 --netlab

Runs from the repository root. Every repetition runs, one after another (so
the machine's load drifts over all of them alike): one worker; two workers
on loopback (the *base* run the predictions start from); two workers under
each emulated profile; two workers with `--straggler 1:2`; and with
`--netlab` two nodes over a real tbf-shaped veth pair per rate. Each
measured 2-worker point is predicted twice (`cost.predict_step`, the code
behind `ttabench predict`): from the same repetition's base run (what a
user does: compute measured once, the network modelled), and from its own
run's compute profile with the modelled link (no measured communication
enters: this isolates the link and overlap model from the drift of compute
speed between runs on a shared machine). The 1-worker run is predicted from
itself; it runs with 1 thread, as each worker of the 2-worker runs does. Measured per-step time = summary.json's train_time_s / steps
(evaluation excluded). The table uses medians over repetitions; residual =
predicted / measured - 1.

Writes OUT/runs.json (every run as soon as it ends, with each measurement's
command, load averages and duration), OUT/validation.md and .json (the table),
OUT/scaling.png and scaling.md (predictions up to 1,024 workers from the
median base run) and keeps the run folders under OUT/runs/.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks import output
from ttabench.divisions.results import atomic_write_json, atomic_write_text, read_json
from ttabench.launch.commands import predict as predict_cmd
from ttabench.launch.net import cost
from ttabench.launch.net.link import PROFILES, Link, parse_rate
from ttabench.launch.usage import comma_list

BOUND = 0.10  # the goal: every point within +-10 % of per-step time


def run_args(args, results_dir: str) -> list[str]:
    data = ["--synthetic"] if args.synthetic else ["--data-dir", os.path.relpath(args.data_dir)]
    return data + [
        "--max-steps",
        str(args.max_steps),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        "1",
        "--progress",
        "none",
        "--thresholds",
        "0.10:0.15:0.05",
        "--results-dir",
        results_dir,
    ]


def clear_point(results_dir: str) -> None:
    """A point's folder holds one run, its latest: the runs of an earlier measurement (the same
    configuration and seed, which `ttabench validate` refuses as duplicates) go before it runs again."""
    for run_dir in glob.glob(os.path.join(results_dir, "*", "*", "*", "*", "")):
        shutil.rmtree(run_dir)


def _one_run(cmd: list[str], results_dir: str, log: str) -> str:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    code = proc.returncode
    # the log is committed with the runs: torch's stack traces name files by absolute path
    atomic_write_text(log, proc.stdout.replace(os.getcwd() + os.sep, ""))
    found = sorted(glob.glob(os.path.join(results_dir, "*", "*", "*", "*", "summary.json")))
    if code != 0 or not found:
        raise SystemExit(f"validate_predict: {' '.join(cmd)} failed (exit {code}); see {log}")
    return os.path.dirname(found[-1])


def measure(
    args, name: str, rep: int, extra: list[str], netlab_rate: str | None = None, hosts: int = 2
) -> str | None:
    """One real run; returns its folder (None: a netlab point skipped, the lab was busy).
    With `netlab_rate`: one node of one worker on each of `hosts` shaped hosts."""
    # relative paths: a run's config.json records them, and must not name this machine's folders
    results_dir = os.path.relpath(os.path.join(args.out, args.runs_folder, f"{name}-r{rep}"))
    os.makedirs(results_dir, exist_ok=True)
    clear_point(results_dir)
    base = [sys.executable, "-m", "ttabench"]
    log = os.path.join(results_dir, "log.txt")
    if netlab_rate is None:
        return _one_run(base + ["run"] + run_args(args, results_dir) + extra, results_dir, log)
    if not _netlab_up(base, netlab_rate, args.netlab_wait, hosts):
        print(f"validate_predict: netlab busy for {args.netlab_wait:.0f} s: {name} skipped", flush=True)
        return None
    try:
        return _one_run(
            base + ["netlab", "run", "--"] + run_args(args, results_dir) + extra, results_dir, log
        )
    finally:
        subprocess.run(base + ["netlab", "down"], capture_output=True)


def _netlab_up(base: list[str], rate: str, wait_s: float, hosts: int = 2) -> bool:
    """Bring the lab up, waiting while someone else's lab holds the namespaces."""
    deadline = time.monotonic() + wait_s
    while True:
        up = subprocess.run(
            base + ["netlab", "up", "--hosts", str(hosts), "--rate", rate], capture_output=True
        )
        if up.returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        print(f"validate_predict: netlab up: {up.stderr.decode().strip()} (waiting)", flush=True)
        time.sleep(15)


SELF_1, SELF_2 = "1 worker (self)", "2 workers loopback (self)"


def points(args) -> list[tuple[str, list[str], str | None]]:
    """(name, run flags, netlab rate) of every measured 2-worker point besides the base."""
    pts = [(f"emulated {n}", ["--workers", "2", "--network", n], None) for n in args.networks]
    pts.append(("straggler 1:2 (loopback)", ["--workers", "2", "--straggler", "1:2"], None))
    if args.netlab:
        pts += [(f"netlab tbf {rate}", [], rate) for rate in args.netlab_rates]
    return pts


def link_for(point: str) -> tuple[Link | None, float]:
    """The link (None: the run's own) and straggler factor a point is predicted with."""
    if point.startswith("emulated "):
        return PROFILES[point.split()[1]], 1.0
    if point.startswith("netlab tbf "):
        # tbf shapes the rate only (no sch_netem here, so no added delay): latency 0
        rate = point.split()[2]
        return Link(f"tbf {rate}", parse_rate(rate), 0.0), 1.0
    if point.startswith("straggler "):
        return None, 2.0
    return None, 1.0


def one_rep(args, rep: int, log: dict) -> None:
    """Measure one repetition, adding each run to `log` (saved after every run)."""
    single = measure(args, "1worker", rep, ["--workers", "1", "--threads", "1"])
    add_run(args, log, _measured(SELF_1, single, single))
    base = measure(args, "base-loopback", rep, ["--workers", "2"])
    add_run(args, log, _measured(SELF_2, base, base))
    pts = points(args)
    k = rep % len(pts)  # each repetition starts at another point: no point always runs at the same moment
    for name, extra, rate in pts[k:] + pts[:k]:
        folder = measure(args, _slug(name), rep, extra, rate)
        if folder is not None:
            add_run(args, log, _measured(name, folder, base))
    print(f"validate_predict: repetition {rep + 1} done", flush=True)


def _measured(point: str, folder: str, base: str) -> dict:
    return {
        "point": point,
        "run_dir": _rel(folder),
        "base_run": _rel(base),
        "load_1min_after": os.getloadavg()[0],
    }


def predicted(run: dict) -> dict:
    """One measured run beside its predictions from the base run and from its own profile."""
    link, straggler = link_for(run["point"])
    p = 1 if run["point"] == SELF_1 else 2
    own, info = predict_cmd.load_run(run["run_dir"])
    base, binfo = predict_cmd.load_run(run["base_run"])
    from_base = cost.predict_step(base, p, link or binfo["link"], straggler=straggler)
    from_own = cost.predict_step(own, p, link or info["link"], straggler=straggler)
    return dict(
        run,
        measured_step_s=info["measured_step_s"],
        predicted_step_s=from_base["step_time_s"],
        own_predicted_step_s=from_own["step_time_s"],
        measured_comm_wait_s=comm_wait_per_step(info),
        predicted_comm_exposed_s=from_own["comm_exposed_s"],
        compute_vs_base=own.compute_s / base.compute_s - 1,  # how far compute speed drifted
    )


def comm_wait_per_step(info: dict) -> float:
    """The critical rank's measured wait for communication per step, emulated delay included
    (summary.json's time breakdown; `info` from predict's load_run)."""
    summary = read_json(os.path.join(info["run_dir"], "summary.json"))
    crit = [r for r in summary["time_breakdown"]["per_rank"] if r["rank"] == info["critical_rank"]][0]
    return crit["comm_wait_s"] / info["steps"]


def table(all_rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["point"] for r in all_rows):
        rs = [r for r in all_rows if r["point"] == name]
        m = statistics.median(r["measured_step_s"] for r in rs)
        p = statistics.median(r["predicted_step_s"] for r in rs)
        own = statistics.median(r["own_predicted_step_s"] for r in rs)
        out.append(
            {
                "point": name,
                "reps": len(rs),
                "measured_step_s": m,
                "predicted_step_s": p,
                "residual": p / m - 1,
                "residual_per_rep": [r["predicted_step_s"] / r["measured_step_s"] - 1 for r in rs],
                "own_predicted_step_s": own,
                "own_residual": own / m - 1,
                "measured_comm_wait_s": statistics.median(r["measured_comm_wait_s"] for r in rs),
                "predicted_comm_exposed_s": statistics.median(r["predicted_comm_exposed_s"] for r in rs),
                "compute_vs_base": statistics.median(r["compute_vs_base"] for r in rs),
                "within_bound": abs(p / m - 1) <= BOUND,
            }
        )
    return out


def markdown(rows: list[dict]) -> str:
    lines = [
        "Residual = predicted / measured - 1 (negative: the model is faster than measured), "
        "per-step time, medians over the repetitions.",
        "",
        "| point | reps | measured ms/step | predicted from base run | residual | per repetition "
        "| compute vs base run | predicted from its own profile | residual | comm wait measured "
        "| exposed comm predicted | within 10% (from base / own) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        reps = ", ".join(f"{100 * x:+.1f}%" for x in r["residual_per_rep"])
        lines.append(
            f"| {r['point']} | {r['reps']} | {1e3 * r['measured_step_s']:.1f} | "
            f"{1e3 * r['predicted_step_s']:.1f} | {100 * r['residual']:+.1f}% | {reps} | "
            f"{100 * r['compute_vs_base']:+.1f}% | "
            f"{1e3 * r['own_predicted_step_s']:.1f} | {100 * r['own_residual']:+.1f}% | "
            f"{1e3 * r['measured_comm_wait_s']:.1f} ms | {1e3 * r['predicted_comm_exposed_s']:.1f} ms | "
            f"{_yes(r['within_bound'])} / {_yes(abs(r['own_residual']) <= BOUND)} |"
        )
    return "\n".join(lines) + "\n"


def scaling(args, all_rows: list[dict]) -> None:
    """Predictions up to 1,024 workers from the median base run, one line per profile."""
    bases = sorted((r for r in all_rows if r["point"] == SELF_2), key=lambda r: r["measured_step_s"])
    base = bases[len(bases) // 2]["run_dir"]
    prof, info = predict_cmd.load_run(base)
    links = [PROFILES[n] for n in ("100gbe", "10gbe", "1gbe", "100mbit", "20mbit")]
    workers = predict_cmd.parse_workers("1:1024:x2")
    rows = []
    for topo in (cost.Topology("ring"), cost.Topology("tree")):
        for r in predict_cmd.predict(prof, info, links, workers, topo, 1.0):
            rows.append(dict(r, topology=topo.kind))
    ring = [r for r in rows if r["topology"] == "ring"]
    predict_cmd.plot(
        ring,
        os.path.join(args.out, "scaling.png"),
        "ResNet-20 on this machine's CPU workers, ring all-reduce, from run " + os.path.basename(base),
    )
    lines = [
        f"Predicted from `{_rel(base)}` (the median of the base runs), batch {prof.batch_size} per worker.",
        "",
        "| topology | network | workers | ms/step | exposed comm ms | img/s | speed-up | efficiency |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["workers"] in (1, 2, 8, 64, 1024):
            lines.append(
                f"| {r['topology']} | {r['network']} | {r['workers']} | {1e3 * r['step_time_s']:.1f} | "
                f"{1e3 * r['comm_exposed_s']:.1f} | {r['images_per_s']:.0f} | {r['speedup']:.1f} | "
                f"{100 * r['efficiency']:.1f}% |"
            )
    atomic_write_text(os.path.join(args.out, "scaling.md"), "\n".join(lines) + "\n")
    atomic_write_json(os.path.join(args.out, "scaling.json"), {"base_run": _rel(base), "rows": rows})


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _rel(path: str) -> str:
    return os.path.relpath(path)


def parser(
    prog: str,
    doc: str,
    out_help: str,
    runs: str,
    *,
    reps: int,
    max_steps: int,
    networks: str,
    netlab_rates: str,
) -> argparse.ArgumentParser:
    """The options validate_predict and validate_algorithms share, with each one's defaults;
    `runs`: the name of the runs' log (OUT/RUNS.json) and folder (OUT/RUNS/)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.set_defaults(runs_folder=runs)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--reps", type=int, default=reps, help=f"repetitions of the whole set (default {reps})")
    p.add_argument("--max-steps", type=int, default=max_steps)
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--networks", default=networks, help="emulated profiles")
    p.add_argument("--netlab", action="store_true", help="also real tbf shaping (root, no lab up)")
    p.add_argument("--netlab-rates", default=netlab_rates)
    p.add_argument("--data-dir", default=os.environ.get("TTABENCH_DATA_DIR"))
    p.add_argument("--synthetic", action="store_true", help="synthetic data instead of CIFAR-10")
    p.add_argument(
        "--recompute",
        action="store_true",
        help=f"predict the runs listed in OUT/{runs}.json again, run nothing",
    )
    p.add_argument("--append", action="store_true", help=f"add to the runs in OUT/{runs}.json")
    p.add_argument("--first-rep", type=int, default=0, help="number of the first repetition (with --append)")
    p.add_argument(
        "--netlab-wait", type=float, default=600, help="seconds to wait for a busy netlab before skipping"
    )
    return p


def parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = p.parse_args(argv)
    args.networks = comma_list(args.networks)
    args.netlab_rates = comma_list(args.netlab_rates)
    if not args.synthetic and not args.data_dir and not args.recompute:
        p.error("no data: --data-dir, $TTABENCH_DATA_DIR or --synthetic")
    return args


def runs_log(args, argv, prog: str, one_rep) -> dict:
    """OUT/RUNS.json: read (--recompute, --append) and, unless --recompute, measured further by
    `one_rep(args, rep, log)` for every repetition, with the command, load and duration."""
    os.makedirs(args.out, exist_ok=True)
    path = _runs_json(args)
    log = read_json(path) if args.recompute or args.append else {"measurements": [], "runs": []}
    if not args.recompute:  # measure (more): every run is in the log as soon as it ends
        measurement = {
            "command": prog.split() + list(argv or sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "load_average_before": os.getloadavg(),
        }
        log["measurements"].append(measurement)
        t0 = time.time()
        for rep in range(args.first_rep, args.first_rep + args.reps):
            one_rep(args, rep, log)
        measurement.update(duration_s=time.time() - t0, load_average_after=os.getloadavg())
        atomic_write_json(path, log)
    return log


def add_run(args, log: dict, run: dict) -> None:
    """One more run in the log, saved at once: a crash later loses no measured run."""
    log["runs"].append(run)
    atomic_write_json(_runs_json(args), log)


def _runs_json(args) -> str:
    return os.path.join(args.out, args.runs_folder + ".json")


def main(argv=None) -> int:
    p = parser(
        "python -m benchmarks.validate_predict",
        __doc__,
        "output folder (results/predict for the committed one)",
        "runs",
        reps=3,
        max_steps=15,
        networks="10gbe,1gbe,100mbit,20mbit",
        netlab_rates="1gbit,100mbit,20mbit",
    )
    args = parse(p, argv)
    log = runs_log(args, argv, p.prog, one_rep)
    result = {"measurements": log["measurements"]}
    all_rows = [predicted(r) for r in log["runs"]]
    rows = table(all_rows)
    scaling(args, all_rows)
    result.update(rows=rows, runs=all_rows)
    output.write_table(args.out, "validation", result, markdown(rows), "validate_predict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
