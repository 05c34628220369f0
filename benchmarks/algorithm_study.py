"""The algorithm study's table and figure, from the runs results/algorithms/make_study.sh made.

    python -m benchmarks.algorithm_study results/algorithms/study      # study.md, .json, .png beside
    python -m benchmarks.algorithm_study DIR --target 0.45 --thresholds 0.30:0.45:0.01

DIR holds one folder per algorithm and network, as make_study.sh lays them
out: DIR/<algorithm>/<network>/<system>/<benchmark>/<division>/<run-id>/.
One row per planned cell (--algorithms x --networks), whether or not its runs
exist yet, so a partly run study says how far it is. Per cell, over its
finished runs (status success or diverged; failed, interrupted and running
runs are counted apart, divisions/scoring.py's rules):

- TTA at --target: the olympic mean (drop one minimum and one maximum;
  n >= 3) and the 95 % bootstrap interval of the mean over the runs that
  reached it, and how many did; with fewer than 3 runs the plain mean is
  shown and marked so;
- ATTMT over --thresholds: the mean over the runs, defined only when every
  run reached every threshold (else "not reached", with how many did);
- final accuracy (last evaluation), step time (train_time_s / steps) and the
  measured bytes per worker per step (summary.json's comm_bytes_per_step),
  means over the runs.

The figure: ATTMT against the link's bandwidth (emulated networks, log
axis), one line per algorithm; real tbf shaping as open markers beside the
line; a cell whose runs did not all reach every threshold is an "x" on the
top edge labelled "not reached"; a cell with no finished run is left out.
Pure Python plus matplotlib; no torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import output
from ttabench import UserError
from ttabench.divisions import metrics, scoring, stats
from ttabench.divisions.algorithms import ALGORITHMS
from ttabench.divisions.results import atomic_write_json, atomic_write_text
from ttabench.launch.net.link import PROFILES, parse_rate
from ttabench.launch.usage import comma_list

NETWORKS = ("1gbe", "100mbit", "20mbit", "tbf-100mbit")  # make_study.sh's folder names


def bandwidth_mbit(network: str) -> float:
    """The link's rate in Mbit/s: an emulated profile's, or tbf-RATE's."""
    if network.startswith("tbf-"):
        return parse_rate(network[4:]) * 8 / 1e6
    return PROFILES[network].bandwidth * 8 / 1e6


def cell(folder: str, spec: tuple[float, float, float], target: float) -> dict:
    """The statistics of one algorithm on one network, from the runs below `folder`."""
    skipped: list[dict] = []
    try:
        runs = scoring.load_inputs([folder], skipped) if _has_runs(folder) else []
    except UserError:  # only failed or unfinished runs below it: none to score yet
        runs = []
    scored = scoring.across_runs(runs, spec, target) if runs else None
    out = {"runs": len(runs), "unfinished": [s["status"] for s in skipped], "seeds": [r.seed for r in runs]}
    if scored is None:
        return out | {"tta": None, "reached_target": 0, "attmt_s": None, "reached_all": 0}
    per = scored["runs"]
    tta = stats.describe([r["tta"] for r in per if r["tta"] is not None])
    attmts = [r["attmt"] for r in per]
    summaries = [r.summary or {} for r in runs]
    return out | {
        "tta": tta,
        "reached_target": tta["n"],
        "attmt_s": stats.mean_of_all(attmts),
        "attmt_values": attmts,
        "reached_all": sum(a is not None for a in attmts),
        "final_accuracy": stats.mean([r.rows[-1]["accuracy"] for r in runs if r.rows]),
        "step_time_s": stats.mean([s["train_time_s"] / s["steps"] for s in summaries if s.get("steps")]),
        "comm_bytes_per_step": stats.mean(
            [s["comm_bytes_per_step"] for s in summaries if s.get("comm_bytes_per_step") is not None]
        ),
        "runs_detail": [{k: r[k] for k in ("name", "seed", "status", "tta", "attmt")} for r in per],
    }


def _has_runs(folder: str) -> bool:
    return os.path.isdir(folder) and any(f == "summary.json" for _, _, fs in os.walk(folder) for f in fs)


def build(root: str, algorithms, networks, spec, target: float) -> list[dict]:
    return [
        dict(
            algorithm=a,
            network=n,
            bandwidth_mbit=bandwidth_mbit(n),
            **cell(os.path.join(root, a, n), spec, target),
        )
        for a in algorithms
        for n in networks
    ]


def tta_text(r: dict) -> str:
    if not r["runs"]:
        return "not run"
    t = r["tta"]
    if t["n"] == 0:
        return f"not reached (0 of {r['runs']})"
    ci = "" if t["ci95"] is None else f" [{t['ci95'][0]:.0f}, {t['ci95'][1]:.0f}]"
    value = f"{t['olympic_mean']:.0f}" if t["olympic_mean"] is not None else f"{t['mean']:.0f} (mean, n < 3)"
    missed = "" if t["n"] == r["runs"] else f"; {r['runs'] - t['n']} of {r['runs']} not reached"
    return f"{value}{ci}{missed}"


def attmt_text(r: dict) -> str:
    if not r["runs"]:
        return "-"
    if r["attmt_s"] is None:
        return f"not reached ({r['reached_all']} of {r['runs']} reached all)"
    return f"{r['attmt_s']:.0f}"


def markdown(rows: list[dict], spec, target: float) -> str:
    done = sum(r["runs"] for r in rows)
    lines = [
        f"TTA at {target:g} and ATTMT over {spec[0]:g}:{spec[1]:g}:{spec[2]:g}, training seconds "
        f"(evaluation excluded); {done} finished runs in {sum(1 for r in rows if r['runs'])} of "
        f"{len(rows)} cells. TTA: olympic mean over the runs that reached the target, 95 % bootstrap "
        "interval of the mean in brackets.",
        "",
        "| algorithm | network | runs (seeds) | TTA s | ATTMT s | final accuracy | ms/step | bytes/step |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r["runs"]:
            unfinished = f", {len(r['unfinished'])} unfinished" if r["unfinished"] else ""
            lines.append(f"| {r['algorithm']} | {r['network']} | 0{unfinished} | not run | - | - | - | - |")
            continue
        seeds = ",".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['algorithm']} | {r['network']} | {r['runs']} ({seeds}) | {tta_text(r)} | {attmt_text(r)} | "
            f"{_pct(r['final_accuracy'])} | {_num(r['step_time_s'], 1e3, '.0f')} | "
            f"{_num(r['comm_bytes_per_step'], 1, ',.0f')} |"
        )
    return "\n".join(lines) + "\n"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x, scale: float, fmt: str) -> str:
    return "-" if x is None else format(scale * x, fmt)


def plot(rows: list[dict], path: str, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    reached = [r["attmt_s"] for r in rows if r["attmt_s"] is not None]
    top = 1.15 * max(reached) if reached else 1.0
    for i, name in enumerate(dict.fromkeys(r["algorithm"] for r in rows)):
        color = f"C{i}"
        mine = [r for r in rows if r["algorithm"] == name and r["runs"]]
        line = sorted(
            (r for r in mine if not r["network"].startswith("tbf-")), key=lambda r: r["bandwidth_mbit"]
        )
        pts = [(r["bandwidth_mbit"], r["attmt_s"]) for r in line if r["attmt_s"] is not None]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", color=color, label=name)
        for r in mine:
            if r["attmt_s"] is None:
                ax.plot([r["bandwidth_mbit"]], [top], marker="x", ms=9, color=color, ls="none")
            elif r["network"].startswith("tbf-"):
                ax.plot([r["bandwidth_mbit"]], [r["attmt_s"]], marker="s", mfc="none", color=color, ls="none")
    ax.axhline(top, color="0.7", lw=0.5)
    ax.text(0.01, top, " x: not reached", transform=ax.get_yaxis_transform(), va="bottom", fontsize=8)
    ax.plot([], [], marker="s", mfc="none", color="0.3", ls="none", label="real tbf shaping")
    ax.set_xscale("log")
    ax.set_ylim(0, top * 1.08)
    ax.set_xlabel("link bandwidth (Mbit/s)")
    ax.set_ylabel("ATTMT (training s)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    output.save_png(fig, path, 120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.algorithm_study", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("root", help="the study's folder (results/algorithms/study)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS))
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--target", type=float, default=0.45)
    p.add_argument("--thresholds", default="0.30:0.45:0.01")
    p.add_argument("--out", help="where study.md, .json and .png go (default: ROOT's parent)")
    args = p.parse_args(argv)
    try:
        spec = metrics.parse_thresholds(args.thresholds)
        networks = comma_list(args.networks)
        for n in networks:
            if not n.startswith("tbf-") and n not in PROFILES:
                raise UserError(f"unknown network {n!r} (an emulated profile or tbf-RATE)")
        algorithms = comma_list(args.algorithms)
        rows = build(args.root, algorithms, networks, spec, args.target)
    except UserError as e:
        print(f"algorithm_study: {e}", file=sys.stderr)
        return 2
    out = args.out or os.path.dirname(os.path.normpath(args.root))
    os.makedirs(out, exist_ok=True)
    text = markdown(rows, spec, args.target)
    result = {"root": args.root, "target": args.target, "thresholds": list(spec), "rows": rows}
    atomic_write_json(os.path.join(out, "study.json"), result)
    atomic_write_text(os.path.join(out, "study.md"), text)
    plot(
        rows,
        os.path.join(out, "study.png"),
        f"ResNet-20, CIFAR-10 subset: ATTMT {args.thresholds} against bandwidth",
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
