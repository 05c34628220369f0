"""The report site's page of each run: status, metrics, time breakdown, config, curve, with a copy
of its raw files beside it (the site is shared on its own)."""

from __future__ import annotations

import os
import shutil

from ttabench.divisions import metrics, scoring
from ttabench.divisions.results import RUN_FILES, atomic_write_bytes, atomic_write_text, section
from ttabench.launch.commands import html_svg


def _copy_raw(run_dir: str, dest: str) -> list[str]:
    os.makedirs(dest)
    files = [f for f in RUN_FILES if os.path.isfile(os.path.join(run_dir, f))]
    for f in files:
        shutil.copyfile(os.path.join(run_dir, f), os.path.join(dest, f))
    return files


def _run_page(run: scoring.Run, entry: dict, problems: list, tree: str) -> dict:
    s = run.summary or {}
    breakdown = section(s, "time_breakdown")
    spec = entry.get("threshold_spec")
    ts = metrics.thresholds(*metrics.parse_thresholds(spec)) if spec else None
    m = metrics.summarize(
        run.points, metrics.parse_thresholds(spec) if spec else None, target=entry.get("target")
    )
    figure = (
        html_svg.run_figure(run.points, ts, metrics.ttmt(run.points, ts) if ts else [])
        if run.points
        else None
    )
    return {
        "name": os.path.relpath(run.name, tree),
        "summary": s,
        "notes": run.notes,
        "metrics": m,
        "thresholds": ts or [],
        "breakdown": section(breakdown, "max_over_ranks"),
        "per_rank": [r for r in breakdown.get("per_rank") or [] if isinstance(r, dict)],
        "config": section(run.config, "config"),
        "resolved": section(run.config, "resolved"),
        "command": (run.config or {}).get("command"),
        "curve": run.rows,
        "problems": problems,
        "svg": figure,
    }


def _problems_by_run(verdict, run_dirs: list[str]) -> dict[str, list]:
    out: dict[str, list] = {d: [] for d in run_dirs}
    for p in verdict.problems:
        path = os.path.abspath(p.path)
        for d in run_dirs:
            if path == os.path.abspath(d) or path.startswith(os.path.abspath(d) + os.sep):
                out[d].append(p)
                break
    return out


def write_run_pages(
    env, site: str, entries: list[dict], slugs: dict, runs: list, verdict, common: dict
) -> None:
    """runs/<slug>.html and runs/<slug>/ (raw files, accuracy.svg) for every run listed."""
    by_dir = {os.path.abspath(r.name): r for r in runs}
    problems = _problems_by_run(verdict, [e["path"] for e in entries])
    page = env.get_template("run.html.j2")
    for e in entries:
        slug = slugs[e["path"]]
        run = by_dir.get(os.path.abspath(e["path"]))
        files = _copy_raw(e["path"], os.path.join(site, "runs", slug))
        ctx = _run_page(run, e, problems[e["path"]], e["tree"]) if run else None
        if ctx and ctx["svg"]:
            atomic_write_bytes(os.path.join(site, "runs", slug, "accuracy.svg"), ctx["svg"], what="plot")
        html = page.render(run=ctx, entry=e, slug=slug, files=files, **common)
        atomic_write_text(os.path.join(site, "runs", slug + ".html"), html)
