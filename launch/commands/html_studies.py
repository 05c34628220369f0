"""The report page's groups: each configuration (a report row) filed under the study it comes from,
a short label that tells it apart from the others of its study, and the validation warnings
counted once each.

A study is the first folder of a results tree under which a run was written
(results/sweeps/..., results/predict/..., results/rcp-runs/...); runs written straight into a
tree (results/<system>/<benchmark>/...) form one study per system. A study whose runs all lie two
or more folders down, in several sub-folders (results/predict/runs/..., results/predict/training-runs/...),
is one study per sub-folder (predict/runs, predict/training-runs). Its description is the first
paragraph of the study folder's README.md, else (a sub-study) the paragraph of its parent's README.md
that names the sub-folder (`training-runs/`), else the parent's first paragraph, else the line of
the tree's README.md table that names the folder, else only what the rows show.
"""

from __future__ import annotations

import json
import os
import re

from ttabench.divisions.experiments import NOT_APPLIED
from ttabench.divisions.results import RunPath, experiment_parts
from ttabench.divisions.scoring import Run

DESCRIPTION_CHARS = 320  # a study's description is cut at a sentence end before this


def tree_of(run_dir: str, trees: list[str]) -> str:
    """The results tree (one of `trees`) a run folder lies in."""
    path = os.path.abspath(run_dir)
    for tree in sorted(trees, key=lambda t: -len(os.path.abspath(t))):
        root = os.path.abspath(tree)
        if path == root or path.startswith(root + os.sep):
            return tree
    return trees[0]


def study_of(run: Run, trees: list[str]) -> tuple[str, str, str]:
    """(tree, study folder, the folders between the study and <system>) of one run."""
    tree = tree_of(run.name, trees)
    where = RunPath.parse(os.path.abspath(run.name))
    rel = os.path.relpath(where.root, os.path.abspath(tree))
    if rel == "." or rel.startswith(".."):
        return tree, where.system, ""
    first, _, rest = rel.partition(os.sep)
    return tree, first, rest


def setting_text(run: Run) -> str:
    """Every run setting of a configuration (config.json's `config` without seed and output
    settings, as validate keys experiments): the full setting a short label stands for."""
    what = experiment_parts(run.name, run.summary, run.config)[2]
    return ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}" for k, v in sorted(what.items())
    )


def _varying(values: list) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def studies(groups: list[tuple[dict, list[Run]]], trees: list[str]) -> list[dict]:
    """The report rows filed by study, in the order of the rows; each row gets `label` (short),
    `setting_full`, `what` (those settings as a dict) and `subfolder`; each study its title, description and what its rows share."""
    found: dict[tuple[str, str], list[dict]] = {}
    top: set[str] = set()
    for row, runs in groups:
        tree, study, sub = study_of(runs[0], trees)
        if study == RunPath.parse(os.path.abspath(runs[0].name)).system and not sub:
            top.add(study)
        what = experiment_parts(runs[0].name, runs[0].summary, runs[0].config)[2]
        found.setdefault((tree, study), []).append(
            dict(row, subfolder=sub, setting_full=setting_text(runs[0]), what=what)
        )
    found = _split_substudies(found)
    out = []
    # The runs written straight into a tree (one study per system) first, then the studies' folders.
    order = sorted(found, key=lambda ts: (trees.index(ts[0]), ts[1] not in top, ts[1]))
    for i, (tree, study) in enumerate(order):
        rows = found[(tree, study)]
        _label(rows)
        shared = {
            k: rows[0][k]
            for k in ("system", "benchmark", "division", "dataset")
            if not _varying([r[k] for r in rows])
        }
        # What the rows differ in (the network of a 1-worker row is none: "workers 1" says so)
        varies = {
            k: sorted({str(r[k]) for r in rows} - {NOT_APPLIED}, key=_natural)
            for k in ("system", "workers", "network", "algorithm")
            if _varying([r[k] for r in rows])
        }
        title = study if len(trees) == 1 else f"{os.path.basename(os.path.normpath(tree))}/{study}"
        out.append(
            {
                "id": f"study-{i}",
                "tree": tree,
                "folder": study,
                "title": title,
                "description": describe(tree, study),
                "shared": shared,
                "varies": varies,
                "rows": rows,
                "runs": sum(r["runs"] for r in rows),
            }
        )
    return out


def _split_substudies(found: dict[tuple[str, str], list[dict]]) -> dict[tuple[str, str], list[dict]]:
    """A study whose rows all lie in sub-folders of several different folders of it becomes one
    study per such folder: each gets its own table, figure and short labels."""
    out: dict[tuple[str, str], list[dict]] = {}
    for (tree, study), rows in found.items():
        parts = [r["subfolder"].split(os.sep) if r["subfolder"] else [] for r in rows]
        if all(len(p) >= 2 for p in parts) and len({p[0] for p in parts}) > 1:
            for r, p in zip(rows, parts):
                r["subfolder"] = os.path.join(*p[1:])
                out.setdefault((tree, f"{study}/{p[0]}"), []).append(r)
        else:
            out[(tree, study)] = rows
    return out


def _label(rows: list[dict]) -> None:
    """What tells a row apart within its study, in a few words: the folder it was written under
    (named by whoever ran the study: w2-1gbe, bs256, emulated-20mbit-r1), else the settings that
    differ, else its system or benchmark. Workers, network and algorithm have columns of their own."""
    subs = [r["subfolder"] for r in rows]
    if _varying(subs):
        common = os.path.commonpath(subs) if all(subs) else ""
        for r in rows:
            label = os.path.relpath(r["subfolder"], common) if common else r["subfolder"] or "(top)"
            r["label"] = re.sub(r"-{2,}", "-", label)  # straggler-1-2--loopback: one dash reads as well
        return
    keys = sorted({k for r in rows for k in r["what"]})
    differ = [k for k in keys if _varying([r["what"].get(k) for r in rows])]
    differ = [k for k in differ if k not in ("workers", "network", "algorithm", "network_shaping")]
    for r in rows:
        parts = [f"{k}={_short(r['what'].get(k))}" for k in differ[:3]]
        if _varying([x["system"] for x in rows]):
            parts.insert(0, r["system"])
        r["label"] = ", ".join(parts) or f"{r['benchmark']} {r['division']}"


def _natural(text: str) -> list:
    """'2' before '10', '1gbe' before '10gbe': numbers in a label compared as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p]


def _short(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def describe(tree: str, study: str) -> str | None:
    """The study's description from the README files the results carry (see the module text)."""
    own = os.path.join(tree, study, "README.md")
    if os.path.isfile(own):
        return _first_paragraph(_read(own))
    parent, _, sub = study.rpartition("/")
    if parent and os.path.isfile(os.path.join(tree, parent, "README.md")):
        text = _read(os.path.join(tree, parent, "README.md"))
        naming = [p for p in re.split(r"\n\s*\n", text) if f"`{sub}/`" in p]
        return _first_paragraph(naming[0] if naming else text)
    # A row naming a folder of the study (`network/netlab-runs/`) before one naming a file in it.
    found = []
    for line in _read(os.path.join(tree, "README.md")).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]*)`", cells[0]) if len(cells) >= 2 else []
        mine = [n for n in names if n == study or n.startswith(study + "/")]
        if mine:
            found.append((not any(n.endswith("/") for n in mine), _plain(cells[1])))
    return min(found, key=lambda f: f[0])[1] if found else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _first_paragraph(text: str) -> str | None:
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para and not para.startswith(("#", "|", "```", "    ")):
            text = _plain(" ".join(para.split()))
            if len(text) <= DESCRIPTION_CHARS:
                return text
            cut = text.rfind(". ", 0, DESCRIPTION_CHARS)
            return text[: cut + 1] if cut > 0 else text[:DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " …"
    return None


def _plain(text: str) -> str:
    """Markdown's inline marks dropped: the description is shown as text."""
    return re.sub(r"\*\*|`|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", text)


def folded_warnings(warnings: list) -> list[dict]:
    """Validation warnings with the same message counted once: {message, count, paths}, most
    frequent first ("75 runs: trained on the CIFAR-10 subset ..." instead of 75 lines)."""
    by: dict[str, list[str]] = {}
    for p in warnings:
        by.setdefault(p.message, []).append(p.path)
    return [
        {"message": m, "count": len(paths), "paths": paths}
        for m, paths in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
