"""`ttabench predict --algorithm` for every algorithm at 2-1,024 workers: whose step is shortest where.

    python -m benchmarks.algorithm_scaling --out results/algorithms     # from the committed validation runs
    python -m benchmarks.algorithm_scaling --out /tmp/s --workers 2:16:x2 --networks 1gbe

Runs from the repository root, after `python -m benchmarks.validate_algorithms`
(it reads OUT/validation-runs.json). Each algorithm is predicted by the real
command, `ttabench predict BASIS --algorithm NAME --workers ... --network
... --json`, from one measured run, its *basis*:

- allreduce, fp16, powersgd, local-sgd, topk: the algorithm's own loopback
  base run of the validation (2 workers, one thread each), the repetition
  with the median step time: its compute holds what the algorithm computes
  on top of a step (casts, PowerSGD's orthogonalisation, top-k selection);
- decentralized: allreduce's basis run. Its own base run has 4 workers on
  the 2 cores, so its compute per step is time-shared, not one worker's;
  decentralized computes nothing on top of a step (its averaging is charged
  as communication), so a plain step's compute is its compute.

Every row is one worker's step at the basis' batch per worker (weak
scaling), the algorithm's steady state (PowerSGD after its start steps,
local SGD the mean over H steps). The winner of a row is the algorithm with
the shortest predicted step: throughput only. Which algorithm reaches an
accuracy first also depends on how many steps each needs (compression and
local steps cost accuracy per step), which is the study's part
(study.md), not this table's.

Writes OUT/scaling.md, OUT/scaling.json (every predicted row and the
commands) and OUT/scaling.png (step time against workers, one panel per
network, one line per algorithm).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks import output
from benchmarks.validate_algorithms import BASE
from ttabench.divisions import algorithms
from ttabench.divisions.results import atomic_write_json, atomic_write_text, read_json
from ttabench.launch.commands import predict as predict_cmd
from ttabench.launch.usage import comma_list

SHARED_BASIS = {"decentralized": "allreduce"}  # predicted from another algorithm's basis run (docstring)
KEPT = ("measured_step_s", "run_algorithm", "algorithm", "algorithm_params", "algorithm_compute")
KEPT += ("algorithm_compute_note", "algorithm_comm", "refused_workers", "compute_basis")
ROW_KEPT = ("network", "workers", "step_time_s", "comm_exposed_s", "comm_bytes_per_step", "images_per_s")


def basis_runs(log: dict, names: list[str]) -> dict[str, str]:
    """Algorithm -> the run folder it is predicted from (see the module docstring)."""
    out = {}
    for name in names:
        own = SHARED_BASIS.get(name, name)
        runs = [r for r in log["runs"] if r["algorithm"] == own and r["point"] == BASE]
        if not runs:
            raise SystemExit(f"algorithm_scaling: no {own!r} base run in the validation runs log")
        steps = {r["run_dir"]: predict_cmd.load_run(r["run_dir"])[1]["measured_step_s"] for r in runs}
        median = statistics.median_low(steps.values())
        out[name] = next(d for d, s in steps.items() if s == median)
    return out


def predict(basis: str, name: str, workers: str, networks: str) -> tuple[list[str], dict]:
    """The command and its JSON output."""
    cmd = ["ttabench", "predict", basis, "--algorithm", name, "--workers", workers, "--network", networks]
    proc = subprocess.run([sys.executable, "-m", *cmd, "--json"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"algorithm_scaling: {' '.join(cmd)}: {proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    # what the table rests on; the RCP-based convergence fields are left out (the shipped RCPs
    # are allreduce's, and they name this machine's folders)
    kept = {k: out[k] for k in KEPT}
    kept["rows"] = [{k: r[k] for k in ROW_KEPT} for r in out["rows"]]
    return cmd, kept


def table(predictions: dict[str, dict]) -> list[dict]:
    """One row per (network, workers): each algorithm's predicted step and bytes, and the winner."""
    cells = {}
    for name, out in predictions.items():
        for r in out["rows"]:
            cell = cells.setdefault((r["network"], r["workers"]), {"step_s": {}, "bytes": {}})
            cell["step_s"][name] = r["step_time_s"]
            cell["bytes"][name] = r.get("comm_bytes_per_step")
    rows = []
    for (network, p), cell in cells.items():
        steps = cell["step_s"]
        winner = min(steps, key=steps.get)
        runner_up = sorted(steps.values())[1] if len(steps) > 1 else None
        rows.append(
            {
                "network": network,
                "workers": p,
                "step_s": steps,
                "comm_bytes_per_step": cell["bytes"],
                "winner": winner,
                "margin": None if runner_up is None else runner_up / steps[winner] - 1,
            }
        )
    return rows


def markdown(result: dict) -> str:
    names = list(result["predictions"])
    lines = [
        "# Predicted step time of every algorithm at 2-1,024 workers",
        "",
        "`ttabench predict --algorithm` from measured runs on "
        f"{result['cpu']} ({result['basis_note']}). Per worker and step (ms), steady state; "
        "bold: the shortest step of the row (throughput only: steps to an accuracy are the study's). "
        "`benchmarks/algorithm_scaling.py` says how the basis runs were chosen. The commands:",
        "",
    ]
    lines += [f"    {' '.join(p['command'])}" for p in result["predictions"].values()]
    lines += [
        "",
        "| network | workers | " + " | ".join(names) + " | shortest | by |",
        "|---|---:|" + "---:|" * len(names) + "---|---:|",
    ]
    for r in result["rows"]:
        cells = []
        for n in names:
            s = r["step_s"].get(n)
            text = "-" if s is None else f"{1e3 * s:,.1f}"
            cells.append(f"**{text}**" if n == r["winner"] else text)
        margin = "-" if r["margin"] is None else f"{100 * r['margin']:.0f} %"
        lines.append(
            f"| {r['network']} | {r['workers']:,} | " + " | ".join(cells) + f" | {r['winner']} | {margin} |"
        )
    lines += [
        "",
        "by: how much longer the second-shortest step is. A margin under 10 % is within the +-10 % "
        "the predictions were validated to (predict-validation.md): no clear winner.",
        "",
        "Bytes one worker sends per step (steady state):",
        "",
    ]
    lines += ["| network | workers | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for r in result["rows"]:
        b = [r["comm_bytes_per_step"].get(n) for n in names]
        lines.append(
            f"| {r['network']} | {r['workers']:,} | "
            + " | ".join("-" if x is None else f"{x:,.0f}" for x in b)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure  # optional dependency, only for the figure

    networks = list(dict.fromkeys(r["network"] for r in result["rows"]))
    fig = Figure(figsize=(4.2 * len(networks), 4.6), layout="constrained")
    axes = fig.subplots(1, len(networks), squeeze=False)[0]
    for ax, network in zip(axes, networks):
        rows = [r for r in result["rows"] if r["network"] == network]
        for i, name in enumerate(result["predictions"]):
            pts = [(r["workers"], r["step_s"][name]) for r in rows if name in r["step_s"]]
            ax.plot(
                [p for p, _ in pts], [1e3 * s for _, s in pts], marker="o", ms=3, color=f"C{i}", label=name
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("workers")
        ax.set_title(network, fontsize=10)
        ax.grid(True, which="both", lw=0.3)
    axes[0].set_ylabel("predicted step time per worker (ms)")
    axes[0].legend(fontsize=8)
    output.save_png(fig, path, 110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.algorithm_scaling", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--out", required=True, help="the validation's folder (results/algorithms for the committed one)"
    )
    p.add_argument("--algorithms", default=",".join(algorithms.ALGORITHMS))
    p.add_argument("--workers", default="2:1024:x2")
    p.add_argument("--networks", default="10gbe,1gbe,100mbit")
    args = p.parse_args(argv)
    log = read_json(os.path.join(args.out, "validation-runs.json"))
    names = comma_list(args.algorithms)
    bases = basis_runs(log, names)
    predictions = {}
    for name in names:
        cmd, out = predict(bases[name], name, args.workers, args.networks)
        predictions[name] = {"command": cmd, "basis": bases[name], **out}
    first = next(iter(predictions.values()))
    basis = first["compute_basis"]
    result = {
        "cpu": _cpu(args.out),
        "basis_note": f"{basis['threads_per_worker']} thread per worker, batch {basis['batch_per_worker']} "
        f"per worker, basis runs of {basis['measured_workers']} workers",
        "predictions": predictions,
        "rows": table(predictions),
    }
    atomic_write_json(os.path.join(args.out, "scaling.json"), result)
    atomic_write_text(os.path.join(args.out, "scaling.md"), markdown(result))
    plot(result, os.path.join(args.out, "scaling.png"))
    print(markdown(result))
    print(f"algorithm_scaling: written to {args.out}")
    return 0


def _cpu(out: str) -> str:
    path = os.path.join(out, "predict-validation.json")
    return read_json(path).get("cpu", "?") if os.path.exists(path) else "?"


if __name__ == "__main__":
    sys.exit(main())
