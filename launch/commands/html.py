"""`ttabench report RESULTS_DIR --html OUT_DIR`: a results tree as one static site.

    ttabench report results --html report-html      # then open report-html/index.html

OUT_DIR/index.html holds the validation verdict (divisions/validate.py), the
report table (the rows of `report --format json`), and per benchmark, data set
and threshold spec: accuracy-vs-time and TTMT plots (SVG, matplotlib) and the
`compare` view of every configuration against the first one, threshold by
threshold with the ratios B/A. OUT_DIR/runs/ has one page per run (status,
metrics, time breakdown, config, curve) with a copy of its raw files, so the
folder works on its own: offline, no scripts, no CDN, CSS inline.

Pages are rendered from Jinja2 templates (templates/ beside this file); every
value is autoescaped. The site is written to a temporary folder and swapped in
whole; an existing OUT_DIR is replaced only when it is a site written here.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import time

from ttabench import UserError, __version__
from ttabench.divisions import experiments, metrics, scoring, validate
from ttabench.divisions.results import REPORT_SITE_MARK, RUN_FILES, atomic_write_bytes, safe_name, section
from ttabench.launch.commands import plot
from ttabench.launch.commands import runs as runs_cmd
from ttabench.launch.commands.inputs import DATA_MARKS, check_target_budget

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
DESCRIBE_KEYS = (*experiments.DESCRIPTION, "setting")
DATA_NOTES = {name: note.rstrip(".") for name, (_mark, note) in DATA_MARKS.items()}


def _check_paths(results_dir: str, out_dir: str) -> None:
    if not os.path.isdir(results_dir):
        raise UserError(f"not a folder: {results_dir}")
    res, out = os.path.realpath(results_dir), os.path.realpath(out_dir)
    if out == res or out.startswith(res + os.sep) or res.startswith(out + os.sep):
        raise UserError(f"--html {out_dir}: choose a folder outside {results_dir} (and not holding it)")
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise UserError(f"--html {out_dir}: exists and is not a folder")
        if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, REPORT_SITE_MARK)):
            raise UserError(
                f"--html {out_dir}: folder exists and is not a report written by ttabench; "
                "choose a new or empty folder"
            )
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise UserError(f"--html {out_dir}: parent folder does not exist: {parent}")


def _row_key(d: dict) -> tuple:
    return tuple(d[k] for k in DESCRIBE_KEYS)


def _label(row: dict) -> str:
    workers = f" ×{row['workers']}" if row["workers"] is not None else ""
    setting = f" ({row['setting']})" if row["setting"] else ""
    return f"{row['system']} {row['division']}{workers} {row['network']}{setting}"


def _svg(fig) -> bytes:
    import matplotlib  # heavy: only when a site is written

    buf = io.BytesIO()
    # Text as text (smaller files, no glyph ids that clash between figures); fixed ids per build.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ttabench"}):
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def _sections(rows: list[dict], scored: dict[tuple, list], thresholds: str | None) -> list[dict]:
    """One section per benchmark, data set and threshold spec: the rows that can be compared."""
    found: dict[tuple, list[dict]] = {}
    for row in rows:
        found.setdefault((row["benchmark"], row["dataset"], thresholds or row["threshold_spec"]), []).append(
            row
        )
    out = []
    for i, ((bench, dataset, spec), members) in enumerate(found.items()):
        base = members[0]
        comparisons = []
        for other in members[1:] if spec else []:
            a, b = scored[_row_key(base)], scored[_row_key(other)]
            if not a or not b:
                continue
            table = scoring.compare_rows(
                [r.points for r in a], [r.points for r in b], metrics.parse_thresholds(spec)
            )
            # The headline: the highest threshold both A and B reached (a threshold neither or
            # only one reached gives no ratio); the highest of the spec when none was.
            both = [t for t in table if t["tta_ratio"] is not None]
            head = both[-1] if both else table[-1]
            comparisons.append(
                {
                    "a": _label(base),
                    "b": _label(other),
                    "rows": table,
                    "last": head,
                    "both_reached": bool(both),
                }
            )
        out.append(
            {
                "id": f"s{i}",
                "benchmark": bench,
                "dataset": dataset,
                "spec": spec,
                "rows": members,
                "comparisons": comparisons,
                "plot": f"plots/{i:02d}-{safe_name(bench)}-{safe_name(dataset)}.svg",
                "note": DATA_NOTES.get(dataset),
            }
        )
    return out


def _section_plot(sec: dict, scored: dict[tuple, list]) -> bytes:
    groups = [(_label(r), scored[_row_key(r)]) for r in sec["rows"] if scored[_row_key(r)]]
    ts = metrics.thresholds(*metrics.parse_thresholds(sec["spec"])) if sec["spec"] else None
    title = f"{sec['benchmark']} on {sec['dataset']}" + (f" [{sec['note']}]" if sec["note"] else "")
    return _svg(plot.figure(groups, ts, title=title))


def _copy_raw(run_dir: str, dest: str) -> list[str]:
    """Copies of the run's files beside its page, so the site can be shared on its own."""
    os.makedirs(dest)
    files = [f for f in RUN_FILES if os.path.isfile(os.path.join(run_dir, f))]
    for f in files:
        shutil.copyfile(os.path.join(run_dir, f), os.path.join(dest, f))
    return files


def _run_page(run: scoring.Run, entry: dict, problems: list, results_dir: str) -> dict:
    s = run.summary or {}
    breakdown = section(s, "time_breakdown")
    spec = entry.get("threshold_spec")
    ts = metrics.thresholds(*metrics.parse_thresholds(spec)) if spec else None
    m = metrics.summarize(
        run.points, metrics.parse_thresholds(spec) if spec else None, target=entry.get("target")
    )
    figure = plot.figure([(entry["id"], [run])], ts, title=None) if run.points else None
    return {
        "name": os.path.relpath(run.name, results_dir),
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
        "svg": figure and _svg(figure),
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


def _environment():
    import jinja2  # imported only when a site is written: keeps every other command's start-up short

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["secs"] = lambda v, none="not reached": none if v is None else f"{v:,.2f} s"
    env.filters["pct"] = lambda v, none="-": none if v is None else f"{100 * v:.2f}%"
    env.filters["ratio"] = lambda v: "-" if v is None else f"{v:.3f}"
    env.filters["thr"] = lambda v: f"{100 * v:g}%"
    env.filters["num"] = lambda v: "-" if v is None else (f"{v:,.4g}" if isinstance(v, float) else str(v))
    return env


def build_site(
    results_dir: str,
    out_dir: str,
    thresholds: str | None = None,
    target: float | None = None,
    budget_s: float | None = None,
    compliance: bool = True,
) -> str:
    """Write the site for `results_dir` into `out_dir`; returns the path of its index.html."""
    _check_paths(results_dir, out_dir)
    runs = scoring.load_inputs([results_dir], every_run=True)
    groups = experiments.report_groups(runs, thresholds, target, budget_s)
    rows = [row for row, _ in groups]
    verdict = validate.validate(results_dir, compliance=compliance)
    by_dir = {os.path.abspath(r.name): r for r in runs}
    entries = runs_cmd.list_runs(results_dir)
    slugs = {e["path"]: f"{i:03d}-{safe_name(e['id'])}" for i, e in enumerate(entries)}
    scored = {
        _row_key(row): [r for r in group if r.status in scoring.SCORED_STATUSES] for row, group in groups
    }
    sections = _sections(rows, scored, thresholds)
    problems = _problems_by_run(verdict, [e["path"] for e in entries])
    env = _environment()
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(out_dir)), f".{os.path.basename(out_dir)}.{secrets.token_hex(4)}.tmp"
    )
    try:
        os.makedirs(os.path.join(tmp, "plots"))
        os.makedirs(os.path.join(tmp, "runs"))
        common = {
            "version": __version__,
            "results_dir": results_dir,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        for sec in sections:
            atomic_write_bytes(os.path.join(tmp, sec["plot"]), _section_plot(sec, scored), what="plot")
        index = env.get_template("index.html.j2").render(
            rows=rows,
            row_sections=[next(x["id"] for x in sections if row in x["rows"]) for row in rows],
            sections=sections,
            verdict=verdict,
            entries=entries,
            slugs=slugs,
            data_notes=DATA_NOTES,
            **common,
        )
        _write(os.path.join(tmp, "index.html"), index)
        page = env.get_template("run.html.j2")
        for e in entries:
            slug = slugs[e["path"]]
            run = by_dir.get(os.path.abspath(e["path"]))
            files = _copy_raw(e["path"], os.path.join(tmp, "runs", slug))
            ctx = _run_page(run, e, problems[e["path"]], results_dir) if run else None
            if ctx and ctx["svg"]:
                atomic_write_bytes(os.path.join(tmp, "runs", slug, "accuracy.svg"), ctx["svg"], what="plot")
            html = page.render(run=ctx, entry=e, slug=slug, files=files, **common)
            _write(os.path.join(tmp, "runs", slug + ".html"), html)
        _write(os.path.join(tmp, REPORT_SITE_MARK), f"written by ttabench {__version__} report --html\n")
        _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return os.path.join(out_dir, "index.html")


def _write(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what="report page")


def _swap(tmp: str, out_dir: str) -> None:
    """Put the finished site in place: a reader sees the old site or the new one."""
    old = None
    if os.path.exists(out_dir):
        old = tmp + ".old"
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError as e:
        if old:
            os.replace(old, out_dir)
        raise UserError(f"cannot write {out_dir}: {e.strerror or e}") from None
    if old:
        shutil.rmtree(old, ignore_errors=True)


def cmd_report_html(args) -> int:
    """`ttabench report RESULTS_DIR --html OUT_DIR` (report.py reads the flag)."""
    if args.thresholds:
        metrics.parse_thresholds(args.thresholds)
    check_target_budget(args)
    index = build_site(args.results_dir, args.html, args.thresholds, args.target, args.budget)
    print(f"wrote {index}")
    return 0
