"""`ttabench sweep`'s table: one row per point from its summary.json, and the files written.

Pure functions of the points' records (no run is started here): a row per
point, the speedups against each network's 1-worker row, the table and its
notes, and ``OUT/sweep.md``, ``OUT/sweep.csv`` and ``OUT/sweep.json``.
Running the grid is launch/commands/sweep.py's.

Columns: img/s over the training time (evaluation excluded); time per epoch
(training time / epochs trained); communication share (the exposed gradient-
communication wait over the training time, max over ranks); the delay the
emulated link added (max over ranks); speedup (img/s over the 1-worker
point's on the same network) and efficiency (speedup / workers); TTA at
``--target`` and ATTMT over ``--thresholds`` where reached ("not reached" and
"undefined" in the table otherwise, as in every command; empty cells in sweep.csv).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from ttabench.divisions.results import atomic_write_json, atomic_write_text
from ttabench.launch.record.tables import Column, Table, to_csv, to_markdown

COLUMNS = [  # (key, table header)
    ("workers", "workers"),
    ("network", "network"),
    ("status", "status"),
    ("img_s", "img/s"),
    ("time_per_epoch_s", "time/epoch (s)"),
    ("comm_share", "comm share"),
    ("network_delay_s", "net delay added (s)"),
    ("speedup", "speedup"),
    ("efficiency", "efficiency"),
    ("tta_target_s", "TTA@target (s)"),
    ("attmt_s", "ATTMT (s)"),
]
LEFT = ("network", "status")
CSV_COLUMNS = [
    "workers",
    "network",
    "backend",
    "status",
    "img_s",
    "time_per_epoch_s",
    "comm_share",
    "comm_wait_s",
    "network_delay_s",
    "train_time_s",
    "epochs",
    "steps",
    "speedup",
    "efficiency",
    "tta_target_s",
    "attmt_s",
    "final_accuracy",
    "run_dir",
    "error",
]
# The words for a metric without a value, as everywhere: a TTA is "not reached", an ATTMT
# (defined only when every threshold was reached) "undefined". CSV cells stay empty.
NOT_REACHED = "not reached"
UNDEFINED = "undefined"


@dataclass(frozen=True)
class Point:
    workers: int
    network: str

    @property
    def name(self) -> str:
        return f"w{self.workers}-{self.network}"


def point_row(pt: Point, summary: dict | None, error: str | None = None, run_dir: str | None = None) -> dict:
    """One table row from a point's summary.json (None when the run left none)."""
    row = {k: None for k in CSV_COLUMNS}
    row.update(workers=pt.workers, network=pt.network, run_dir=run_dir, error=error)
    if summary is None:
        row["status"] = "failed"
        return row
    status = summary.get("status", "failed")
    row.update(
        status=status if not (error and status == "success") else "failed",
        backend=summary.get("backend"),
        steps=summary.get("steps"),
        epochs=summary.get("epochs"),
        train_time_s=summary.get("train_time_s"),
        img_s=summary.get("throughput_img_s"),
    )
    if status != "success" and not row["error"]:
        row["error"] = summary.get("error")
    t = row["train_time_s"]
    if t and row["epochs"]:
        row["time_per_epoch_s"] = t / row["epochs"]
    worst = (summary.get("time_breakdown") or {}).get("max_over_ranks") or {}
    row["comm_wait_s"] = worst.get("comm_wait_s")
    row["network_delay_s"] = worst.get("network_delay_s")
    if t and row["comm_wait_s"] is not None:
        row["comm_share"] = row["comm_wait_s"] / t
    m = summary.get("metrics") or {}
    row["target"] = m.get("target")  # which of the two metrics was asked for (not a CSV column)
    row["thresholds"] = "thresholds" in m
    if m.get("target") is not None:
        row["tta_target_s"] = m.get("target_tta_s")
    if "thresholds" in m:
        row["attmt_s"] = m.get("attmt_s")
    row["final_accuracy"] = m.get("final_accuracy")
    return row


def add_speedups(rows: list[dict]) -> list[dict]:
    """Speedup: img/s over that of the successful 1-worker row of the same network;
    efficiency = speedup / workers."""
    base = {
        r["network"]: r["img_s"]
        for r in rows
        if r["workers"] == 1 and r["status"] == "success" and r["img_s"]
    }
    for r in rows:
        b = base.get(r["network"])
        if r["status"] == "success" and r["img_s"] and b:
            r["speedup"] = r["img_s"] / b
            r["efficiency"] = r["speedup"] / r["workers"]
    return rows


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if key == "img_s":
        return f"{v:,.1f}"
    if key == "comm_share":
        return f"{100 * v:.1f}%"
    if key in ("speedup", "efficiency"):
        return f"{v:.2f}"
    if key.endswith("_s"):
        return f"{v:.2f}"
    return str(v)


def _cell(key: str, row: dict) -> str:
    if row.get(key) is None and row.get("status") == "success":
        if key == "tta_target_s" and row.get("target") is not None:
            return NOT_REACHED
        if key == "attmt_s" and row.get("thresholds"):
            return UNDEFINED
    return _fmt(key, row.get(key))


def sweep_table(rows: list[dict]) -> Table:
    return Table([Column(h, k, lambda r, k=k: _cell(k, r), left=k in LEFT) for k, h in COLUMNS], rows)


def markdown_table(rows: list[dict]) -> str:
    return to_markdown(sweep_table(rows))


def notes(rows: list[dict], summaries: list[dict | None]) -> list[str]:
    out = [
        "img/s: training images per second over the training time (evaluation excluded); "
        "time/epoch = training time / epochs trained.",
        "comm share: exposed gradient-communication wait / training time, max over ranks; "
        "net delay added: time the emulated link added to collectives (max over ranks).",
        "speedup: img/s / img/s of the 1-worker point on the same network; efficiency = speedup / workers.",
        "With 1 worker no link is crossed, so the network setting changes nothing: "
        "1-worker rows of different networks differ by measurement noise only.",
    ]
    s = next((s for s in summaries if s), None)
    if s:
        m = s.get("metrics") or {}
        if m.get("target") is not None:
            out.append(f"TTA@target: training time to {100 * m['target']:g}% test accuracy.")
        else:
            out.append("TTA@target: '-' (no --target given).")
        if "thresholds" in m:
            out.append(
                f"ATTMT: mean time to the thresholds {m.get('threshold_spec')} "
                "(defined only when every threshold was reached)."
            )
        if s.get("synthetic"):
            out.append("Data: the built-in synthetic data set (a demo, never a closed-division result).")
        elif s.get("dataset") == "cifar10-subset":
            out.append("Data: a CIFAR-10 subset (real images, not the full benchmark).")
    failed = [r for r in rows if r["status"] != "success"]
    for r in failed:
        out.append(
            f"w{r['workers']}-{r['network']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
        )
    return out


def write_outputs(out_dir: str, rows: list[dict], summaries: list[dict | None], command: list[str]) -> str:
    table = markdown_table(rows)
    md = ["# Scaling sweep", "", "Command:", "", "    " + shlex.join(command), "", table, ""]
    md += [f"- {n}" for n in notes(rows, summaries)]
    atomic_write_text(os.path.join(out_dir, "sweep.md"), "\n".join(md) + "\n")
    csv_table = Table([Column(k) for k in CSV_COLUMNS], rows)
    atomic_write_text(os.path.join(out_dir, "sweep.csv"), to_csv(csv_table))
    atomic_write_json(os.path.join(out_dir, "sweep.json"), {"command": command, "rows": rows})
    return table
