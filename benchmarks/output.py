"""What a benchmark writes besides what it prints: the numbers as JSON, where `--json PATH` asks,
and a validation's table as JSON and markdown side by side."""

from __future__ import annotations

import io
import json
import os

from ttabench.divisions.results import atomic_write_bytes, atomic_write_json, atomic_write_text


def write_json(path: str | None, obj, indent: int) -> None:
    """Write obj to path as JSON (ASCII, `indent` spaces); nothing when path is None or empty."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)


def write_table(out: str, stem: str, result: dict, markdown: str, prog: str | None = None) -> None:
    """OUT/STEM.json (the numbers) and OUT/STEM.md (the table); with `prog`, also print the
    table and where it went, as a validation run from a terminal shows it."""
    atomic_write_json(os.path.join(out, stem + ".json"), result)
    atomic_write_text(os.path.join(out, stem + ".md"), markdown)
    if prog:
        print(markdown)
        print(f"{prog}: written to {out}")


def save_png(fig, path: str, dpi: int) -> None:
    """A matplotlib figure written as PNG, whole or not at all."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue(), "plot")
