"""`ttabench report RESULTS_DIR... --html OUT_DIR`: one or more results trees as one static site.

    ttabench report results --html report-html      # then open report-html/index.html

OUT_DIR/index.html holds the validation verdict of every tree (divisions/validate.py; a warning
shared by many runs once, with its count), then one section per study (html_studies.py): its
rows of `report --format json` under short labels, sortable (templates/sort.js, inline), and
per benchmark, data set and threshold spec an accuracy-vs-time and TTMT figure (SVG,
matplotlib). OUT_DIR/compare.html (html_compare.py) sets two systems or two algorithms side by
side and compares the configurations of each study threshold by threshold with the ratios B/A.
OUT_DIR/runs/ has one page per run (html_runs.py) with a copy of its raw files, so the folder
works on its own: offline, no CDN, CSS and script inline.

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
from ttabench.divisions.results import REPORT_SITE_MARK, atomic_write_bytes, safe_name
from ttabench.launch.commands import html_compare, html_runs, html_studies, plot
from ttabench.launch.commands import runs as runs_cmd
from ttabench.launch.commands.html_compare import row_key
from ttabench.launch.commands.inputs import DATA_MARKS, check_target_budget

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
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


def _svg(fig) -> bytes:
    import matplotlib  # heavy: only when a site is written

    buf = io.BytesIO()
    # Text as text (smaller files, no glyph ids that clash between figures); fixed ids per build.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ttabench"}):
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def _figure(groups: list, spec: str | None, title: str) -> bytes:
    ts = metrics.thresholds(*metrics.parse_thresholds(spec)) if spec else None
    return _svg(plot.figure([g for g in groups if g[1]], ts, title=title))


def _section_plot(sec: dict, scored: dict[tuple, list]) -> bytes:
    title = f"{sec['study']['title']}: {sec['benchmark']} on {sec['dataset']}" + (
        f" [{sec['note']}]" if sec["note"] else ""
    )
    return _figure([(r["label"], scored[row_key(r)]) for r in sec["rows"]], sec["spec"], title)


def _pair_plot(pair: dict, scored: dict[tuple, list]) -> bytes:
    rows = (pair["row_a"], pair["row_b"])
    title = f"{pair['row_a']['benchmark']} on {pair['row_a']['dataset']}: {pair['a']} vs {pair['b']}"
    return _figure(
        [(lbl, scored[row_key(r)]) for lbl, r in zip((pair["a"], pair["b"]), rows)], pair["spec"], title
    )


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


def _verdict(trees: list[str], compliance: bool) -> validate.Result:
    """`ttabench validate` of every tree, as one verdict."""
    out = validate.Result(", ".join(trees))
    real = {t: os.path.realpath(t) for t in trees}
    # A tree inside another one given (or the same one twice) is checked once, with the outer one.
    outer = [
        t for t in dict.fromkeys(real.values()) if not any(t.startswith(o + os.sep) for o in real.values())
    ]
    for tree in [next(t for t in trees if real[t] == o) for o in outer]:
        one = validate.validate(tree, compliance=compliance)
        out.runs += one.runs
        out.problems += one.problems
        for status, n in one.statuses.items():
            out.statuses[status] = out.statuses.get(status, 0) + n
    return out


def build_site(
    results_dirs: list[str] | str,
    out_dir: str,
    thresholds: str | None = None,
    target: float | None = None,
    budget_s: float | None = None,
    compliance: bool = True,
) -> str:
    """Write the site for the results trees into `out_dir`; returns the path of its index.html."""
    trees = [results_dirs] if isinstance(results_dirs, str) else list(results_dirs)
    for tree in trees:
        _check_paths(tree, out_dir)
    # A run below two of the trees given (results and results/sweeps) is one run.
    runs = list({os.path.realpath(r.name): r for r in scoring.load_inputs(trees, every_run=True)}.values())
    groups = experiments.report_groups(runs, thresholds, target, budget_s)
    scored = {
        row_key(row): [r for r in group if r.status in scoring.SCORED_STATUSES] for row, group in groups
    }
    studies = html_studies.studies(groups, trees)
    sections = [sec for st in studies for sec in html_compare.sections(st, scored, thresholds, DATA_NOTES)]
    rows = [row for st in studies for row in st["rows"]]
    pairs = html_compare.pairs(rows, scored, thresholds)
    verdict = _verdict(trees, compliance)
    listed = {
        os.path.realpath(e["path"]): dict(e, tree=tree) for tree in trees for e in runs_cmd.list_runs(tree)
    }
    entries = sorted(listed.values(), key=lambda e: e.get("started") or "", reverse=True)
    slugs = {e["path"]: f"{i:03d}-{safe_name(e['id'])}" for i, e in enumerate(entries)}
    by_real = {os.path.realpath(path): slug for path, slug in slugs.items()}
    links = {
        row_key(row): [
            (by_real[p], os.path.basename(p))
            for p in map(os.path.realpath, (r.name for r in group))
            if p in by_real
        ]
        for row, group in groups
    }
    for row in rows:
        row["run_links"] = links.get(row_key(row), [])
    env = _environment()
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(out_dir)), f".{os.path.basename(out_dir)}.{secrets.token_hex(4)}.tmp"
    )
    try:
        os.makedirs(os.path.join(tmp, "plots"))
        os.makedirs(os.path.join(tmp, "runs"))
        common = {
            "version": __version__,
            "results_dir": " ".join(trees),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        for sec in sections:
            atomic_write_bytes(os.path.join(tmp, sec["plot"]), _section_plot(sec, scored), what="plot")
        for pair in pairs:
            pair["plot"] = f"plots/{pair['id']}.svg"
            atomic_write_bytes(os.path.join(tmp, pair["plot"]), _pair_plot(pair, scored), what="plot")
        index = env.get_template("index.html.j2").render(
            studies=studies,
            sections=sections,
            rows=rows,
            pairs=pairs,
            verdict=verdict,
            warnings=html_studies.folded_warnings(verdict.warnings),
            entries=entries,
            slugs=slugs,
            data_notes=DATA_NOTES,
            **common,
        )
        _write(os.path.join(tmp, "index.html"), index)
        compare_page = env.get_template("compare.html.j2").render(pairs=pairs, sections=sections, **common)
        _write(os.path.join(tmp, "compare.html"), compare_page)
        html_runs.write_run_pages(env, tmp, entries, slugs, runs, verdict, common)
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
    index = build_site(args.results_dirs, args.html, args.thresholds, args.target, args.budget)
    print(f"wrote {index}")
    return 0
