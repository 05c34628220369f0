"""ResNet-20 trained across a lab of 4 and 8 hosts, against `ttabench predict` from its own profile.

    python -m benchmarks.netlab_training --out results/predict          # as root, ~8 min
    python -m benchmarks.netlab_training --out results/predict --render  # the table again

Runs from the repository root. For each rate (20mbit, 100mbit) and each lab
(4 and 8 hosts), one `ttabench netlab run` of ResNet-20 (closed recipe,
the real CIFAR-10 subset from --data-dir / $TTABENCH_DATA_DIR, batch 32 per worker, --max-steps, seed 1, one worker and one
thread per host namespace). Each run is predicted at its own worker count from
its own profile (its compute per step as measured: 4-8 workers time-share the
2 cores, and the profile records that) with the lab's link (nominal rate,
latency 0: no sch_netem here), by the code behind `ttabench predict`; what this
tests is the communication part: the gradient buckets' ring all-reduces over
the shaped links and their overlap with the backward pass. Writes
OUT/scale-training.json (each run with its command and load) and
OUT/scale-training.md (measured and predicted per-step time, residual =
predicted / measured - 1, as in validation.md).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

from benchmarks import validate_predict as vp
from ttabench.divisions.results import atomic_write_json, atomic_write_text, read_json
from ttabench.launch.commands import predict as predict_cmd
from ttabench.launch.net import cost
from ttabench.launch.net.link import Link, parse_rate
from ttabench.launch.usage import comma_list

BOUND = 0.15


def measure(args, rate: str, hosts: int) -> dict:
    results = os.path.relpath(os.path.join(args.out, "training-runs", f"{rate}-{hosts}hosts"))
    base = [sys.executable, "-m", "ttabench", "netlab"]
    lab = ["--lab", args.lab]
    run_flags = ["--data-dir", os.path.relpath(args.data_dir), "--max-steps", str(args.max_steps)]
    run_flags += ["--batch-size", "32", "--seed", "1"]
    run_flags += ["--thresholds", "0.10:0.15:0.05", "--progress", "none", "--collective-timeout", "120"]
    vp.clear_point(results)
    load, t0 = os.getloadavg(), time.monotonic()
    try:  # `up` inside: an interrupt while it builds the lab still takes it down
        subprocess.run([*base, "up", "--hosts", str(hosts), "--rate", rate, "--no-measure", *lab], check=True)
        cmd = [*base, "run", *lab, "--timeout", "900", "--", *run_flags, "--results-dir", results]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        subprocess.run([*base, "down", *lab], capture_output=True)
    found = sorted(glob.glob(os.path.join(results, "*", "resnet20", "closed", "*", "summary.json")))
    if proc.returncode != 0 or not found:
        raise SystemExit(f"netlab_training: {rate} {hosts} hosts failed: {proc.stderr.strip()[-400:]}")
    return {
        "rate": rate,
        "hosts": hosts,
        "run_dir": os.path.relpath(os.path.dirname(found[-1])),
        "command": "ttabench netlab run -- " + " ".join(run_flags),
        "duration_s": time.monotonic() - t0,
        "loadavg_before": list(load),
        "loadavg_after": list(os.getloadavg()),
    }


def predicted(run: dict) -> dict:
    prof, info = predict_cmd.load_run(run["run_dir"])
    link = Link(f"tbf {run['rate']}", parse_rate(run["rate"]), 0.0)
    p = run["hosts"]
    got = cost.predict_step(prof, p, link)
    return dict(
        run,
        measured_step_s=info["measured_step_s"],
        predicted_step_s=got["step_time_s"],
        residual=got["step_time_s"] / info["measured_step_s"] - 1,
        compute_s=prof.compute_s,
        measured_comm_wait_s=vp.comm_wait_per_step(info),
        predicted_comm_exposed_s=got["comm_exposed_s"],
        gradient_bytes=prof.grad_bytes,
    )


def markdown(rows: list[dict]) -> str:
    loads = [x for r in rows for x in (r["loadavg_before"][0], r["loadavg_after"][0])]
    lines = [
        f"ResNet-20 across a netlab (tbf, no added delay), one worker and one thread per host, "
        f"{rows[0]['command']}; predicted from each run's own profile with the lab's nominal rate "
        f"(launch/net/cost.py); residual = predicted / measured - 1 (negative: the model is faster than measured). "
        f"2 shared cores, 1-minute load average {min(loads):.1f}-{max(loads):.1f}.",
        "",
        "| rate | workers | measured ms/step | predicted ms/step | residual | within 15% | compute ms "
        "| comm wait measured ms | exposed comm predicted ms |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']} | {r['hosts']} | {1e3 * r['measured_step_s']:.0f} | {1e3 * r['predicted_step_s']:.0f} | "
            f"{100 * r['residual']:+.1f}% | {'yes' if abs(r['residual']) <= BOUND else 'NO'} | "
            f"{1e3 * r['compute_s']:.0f} | {1e3 * r['measured_comm_wait_s']:.0f} | "
            f"{1e3 * r['predicted_comm_exposed_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.netlab_training", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", required=True)
    p.add_argument("--rates", default="20mbit,100mbit")
    p.add_argument("--hosts", default="4,8")
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--render", action="store_true")
    p.add_argument("--data-dir", default=os.environ.get("TTABENCH_DATA_DIR"))
    p.add_argument("--lab", default="train", help="the lab's name (default train)")
    args = p.parse_args(argv)
    if not args.render and not args.data_dir:
        p.error("no data: --data-dir or $TTABENCH_DATA_DIR (the real CIFAR-10 subset)")
    path = os.path.join(args.out, "scale-training.json")
    if not args.render:
        runs = []
        for rate in comma_list(args.rates):
            for hosts in comma_list(args.hosts):
                runs.append(measure(args, rate, int(hosts)))
                atomic_write_json(path, {"runs": runs})
                print(
                    f"netlab_training: {rate} {hosts} hosts done ({runs[-1]['duration_s']:.0f} s)", flush=True
                )
    rows = [predicted(r) for r in read_json(path)["runs"]]
    atomic_write_json(path, {"runs": rows})
    atomic_write_text(os.path.join(args.out, "scale-training.md"), markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
