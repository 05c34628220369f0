"""The one table renderer: the same rows as Markdown, CSV (raw values, floats exact),
JSON and rich, with text shown literally."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console

from ttabench.launch.record.tables import Column, Table, metrics_table, render, show, to_rich

ROWS = [
    {"name": "a|b", "t": 0.1 + 0.2, "counts": {"success": 2, "failed": 1}, "notes": ["x", "y"]},
    {"name": "[/bold]c", "t": None, "counts": {}, "notes": []},
]
TABLE = Table(
    [
        Column("run", "name", left=True),
        Column("time", "t", lambda r: "-" if r["t"] is None else f"{r['t']:.2f} s"),
        Column("counts"),
        Column("notes"),
    ],
    ROWS,
    title="two runs",
    notes=["a note"],
)


def test_markdown():
    lines = render(TABLE, "md").splitlines()
    assert lines[:4] == ["two runs", "", "| run | time | counts | notes |", "|---|---:|---:|---:|"]
    assert lines[4].startswith("| a/b | 0.30 s | ")  # '|' in a cell cannot break the row
    assert lines[5].startswith("| [/bold]c | - | ")
    assert lines[-2:] == ["", "a note"]


def test_csv_and_json_hold_raw_values():
    rows = list(csv.reader(io.StringIO(render(TABLE, "csv"))))
    assert rows[0] == ["name", "t", "counts", "notes"]
    assert rows[1] == ["a|b", repr(0.1 + 0.2), "failed:1;success:2", "x; y"]
    assert float(rows[1][1]) == 0.1 + 0.2 and rows[2][1] == ""
    assert json.loads(render(TABLE, "json"))[0] == {k: ROWS[0][k] for k in ("name", "t", "counts", "notes")}


def test_rich_shows_text_literally():
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    console.print(to_rich(TABLE))
    out = console.file.getvalue()
    assert "[/bold]c" in out and "0.30 s" in out and "two runs" in out


def test_show_is_markdown_off_a_terminal():
    console = Console(file=io.StringIO())
    show(metrics_table({"target": 0.8, "target_tta_s": None}, title="run"), console)
    out = console.file.getvalue()
    assert "| TTA @ 80% | not reached |" in out
