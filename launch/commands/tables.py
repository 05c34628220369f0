"""Human-readable tables of results (rich), for the CLI."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table
from ttabench.divisions.results import read_json


def _s(v, fmt="{:.2f} s") -> str:
    return "not reached" if v is None else fmt.format(v)


def metrics_table(m: dict, title: str = "metrics") -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    if "target_tta_s" in m:
        t.add_row(
            f"TTA @ {100 * m['target']:g}%" if m.get("target") is not None else "TTA @ target",
            _s(m["target_tta_s"]),
        )
    if "aat" in m and m.get("budget_s") is not None:
        t.add_row(
            f"AAT @ {m['budget_s']:g} s", "no evaluation" if m["aat"] is None else f"{100 * m['aat']:.2f}%"
        )
    if "thresholds" in m:
        ts = m["thresholds"]
        t.add_row(
            f"ATTMT {100 * ts[0]:g}..{100 * ts[-1]:g}%",
            _s(m["attmt_s"])
            if m["attmt_s"] is not None
            else f"undefined ({sum(v is None for v in m['tta_s'])} of {len(ts)} thresholds not reached)",
        )
        for thr, v in zip(ts, m["tta_s"]):
            t.add_row(f"  TTA @ {100 * thr:g}%", _s(v))
    return t


def print_run_summary(run_dir: str, console: Console | None = None, summary: dict | None = None) -> None:
    console = console or Console()
    s = summary if summary is not None else read_json(os.path.join(run_dir, "summary.json"))
    m = s.get("metrics", {})
    label = f"{s.get('benchmark')} {s.get('division')}, {s.get('world_size')} worker(s)"
    if s.get("synthetic"):
        label += " [synthetic data: not a closed-division result]"
    elif s.get("dataset") == "cifar10-subset":
        label += " [CIFAR-10 subset: not the full benchmark]"
    console.print(
        f"[bold]{label}[/]: status {s.get('status')} ({s.get('stop_reason')}), "
        f"{s.get('steps')} steps, {s.get('epochs', 0):.2f} epochs"
    )
    if s.get("train_time_s") is not None:
        console.print(
            f"training time {s['train_time_s']:.2f} s (evaluation excluded), total "
            f"{s.get('total_time_s', 0):.2f} s, {s.get('throughput_img_s') or 0:,.0f} img/s, "
            f"final accuracy {100 * (m.get('final_accuracy') or 0):.2f}%"
        )
    if m.get("budget_s") is None and m.get("final_accuracy") is not None:
        m = dict(m)
        m["budget_s"] = s.get("train_time_s")
        m["aat"] = m.get("final_accuracy")
    console.print(metrics_table(m, title="time-to-accuracy"))
    console.print(f"results: {run_dir}", soft_wrap=True)
