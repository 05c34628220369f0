"""What a benchmark writes besides what it prints: the numbers as JSON, where `--json PATH` asks."""

from __future__ import annotations

import json


def write_json(path: str | None, obj, indent: int) -> None:
    """Write obj to path as JSON (ASCII, `indent` spaces); nothing when path is None or empty."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
