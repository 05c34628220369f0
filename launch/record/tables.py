"""Every table the CLI prints or writes, drawn by one renderer.

A table is a list of columns over rows (dicts). It is shown with rich on a
terminal, and as Markdown otherwise (a pipe, a file, a test); ``--format csv``
and ``--format json`` write the raw values instead of the display text:
CSV cells are the values themselves (floats as ``repr``, so they read back
exactly; None as an empty cell), JSON the values as they are.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from ttabench.divisions.results import read_json


def plain(v) -> str:
    """Display text of a value: '-' for none."""
    return "-" if v is None else str(v)


@dataclass(frozen=True)
class Column:
    header: str
    key: str | None = None  # the row's raw value (CSV, JSON); the header when not given
    show: Callable[[dict], str] | None = None  # display text of a row (rich, Markdown)
    left: bool = False  # text columns are left-aligned, numbers right-aligned

    @property
    def field(self) -> str:
        return self.key or self.header

    def text(self, row: dict) -> str:
        return self.show(row) if self.show else plain(row.get(self.field))


@dataclass
class Table:
    columns: Sequence[Column]
    rows: list[dict]
    title: str | None = None
    notes: list[str] = field(default_factory=list)  # lines below the table

    def records(self) -> list[dict]:
        return [{c.field: r.get(c.field) for c in self.columns} for r in self.rows]


def csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):
        return ";".join(f"{k}:{n}" for k, n in sorted(v.items()))
    if isinstance(v, list):
        return "; ".join(map(str, v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_markdown(t: Table) -> str:
    """A Markdown table ('|' inside a cell becomes '/'), the title above and the notes below."""
    align = ["---" if c.left else "---:" for c in t.columns]
    lines = [f"{t.title}", ""] if t.title else []
    lines += ["| " + " | ".join(c.header for c in t.columns) + " |", "|" + "|".join(align) + "|"]
    for r in t.rows:
        lines.append("| " + " | ".join(c.text(r).replace("|", "/") for c in t.columns) + " |")
    if t.notes:
        lines += ["", *t.notes]
    return "\n".join(lines)


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.field for c in t.columns])
    for r in t.records():
        w.writerow([csv_value(v) for v in r.values()])
    return buf.getvalue()


def to_json(t: Table) -> str:
    return json.dumps(t.records(), indent=2)


def to_rich(t: Table) -> RichTable:
    """Every cell and the title shown literally: '[/x]' in a folder name is not rich markup."""
    rt = RichTable(title=escape(t.title) if t.title else None)
    for c in t.columns:
        rt.add_column(escape(c.header), justify="left" if c.left else "right", overflow="fold")
    for r in t.rows:
        rt.add_row(*(escape(c.text(r)) for c in t.columns))
    return rt


def render(t: Table, fmt: str) -> str:
    """The table as text: 'md', 'csv' or 'json'."""
    return {"md": to_markdown, "csv": to_csv, "json": to_json}[fmt](t)


def show(t: Table, console: Console | None = None) -> None:
    """rich on a terminal, Markdown otherwise; the notes below it, as they are."""
    console = console or Console()
    if console.is_terminal:
        console.print(to_rich(t))
        for line in t.notes:
            console.print(line, markup=False, highlight=False)
    else:
        console.file.write(to_markdown(t) + "\n\n")
        console.file.flush()


# --- the metrics of one run ------------------------------------------------------------


def seconds(v, none: str = "not reached", fmt: str = "{:.2f} s") -> str:
    return none if v is None else fmt.format(v)


def metrics_table(m: dict, title: str = "metrics") -> Table:
    """TTA at the target, AAT at the budget, ATTMT and TTA at every threshold of one curve."""
    rows = []
    if "target_tta_s" in m:
        label = f"TTA @ {100 * m['target']:g}%" if m.get("target") is not None else "TTA @ target"
        rows.append((label, seconds(m["target_tta_s"])))
    if "aat" in m and m.get("budget_s") is not None:
        rows.append(
            (f"AAT @ {m['budget_s']:g} s", "no evaluation" if m["aat"] is None else f"{100 * m['aat']:.2f}%")
        )
    if "thresholds" in m:
        ts = m["thresholds"]
        missed = sum(v is None for v in m["tta_s"])
        value = seconds(m["attmt_s"], none=f"undefined ({missed} of {len(ts)} thresholds not reached)")
        rows.append((f"ATTMT {100 * ts[0]:g}..{100 * ts[-1]:g}%", value))
        rows += [(f"  TTA @ {100 * thr:g}%", seconds(v)) for thr, v in zip(ts, m["tta_s"])]
    return Table(
        [Column("metric", left=True), Column("value")],
        [{"metric": k, "value": v} for k, v in rows],
        title=title,
    )


def print_run_summary(run_dir: str, console: Console | None = None, summary: dict | None = None) -> None:
    """The end-of-run report of a run folder (its summary.json, or `summary` when the caller
    holds it already). Lines are never wrapped by us (a terminal folds them itself, a log file
    keeps them whole), AAT is shown only for a run with a time budget."""
    console = console or Console()
    s = summary if summary is not None else read_json(os.path.join(run_dir, "summary.json"))
    m = s.get("metrics", {})
    label = f"{s.get('benchmark')} {s.get('division')}, {s.get('world_size')} worker(s)"
    if s.get("synthetic"):
        label += " [synthetic data: not a closed-division result]"
    elif s.get("dataset") == "cifar10-subset":
        label += " [CIFAR-10 subset: not the full benchmark]"
    lines = [
        f"{label}: status {s.get('status')} ({s.get('stop_reason')}), "
        f"{s.get('steps')} steps, {s.get('epochs') or 0:.2f} epochs"
    ]
    if s.get("train_time_s") is not None:
        img_s = s.get("throughput_img_s")
        final = m.get("final_accuracy")
        lines.append(
            f"training time {s['train_time_s']:.2f} s (evaluation excluded), total "
            f"{s.get('total_time_s', 0):.2f} s, "
            + ("no training step" if img_s is None else f"{img_s:,.0f} img/s")
            + ", "
            + ("not evaluated" if final is None else f"final accuracy {100 * final:.2f}%")
        )
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    show(metrics_table(m, title="time-to-accuracy"), console)
    console.print(f"results: {run_dir}", soft_wrap=True, markup=False, highlight=False)
