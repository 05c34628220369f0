"""`ttabench report --html`: the site of a results tree, opened in a real headless Chromium.

The tree is a copy of the repository's committed results (real runs of this suite) plus the
five-seed set once more under a second system name, so the site has comparisons between
configurations of one system and between two systems. The browser test checks that every
page loads without a console error, exception or failed resource; that the tables hold the
numbers of `report --format json` and `compare --json`; and writes screenshots to the
git-ignored artifacts folder ($TTABENCH_ARTIFACTS_DIR, default artifacts/ in the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import browser
import pytest
from conftest import IN_CI, run_cli

from ttabench.divisions import results as results_format

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TTABENCH_ARTIFACTS_DIR") or REPO / "artifacts") / "html-report"
SECOND = "other-2c"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html") / "results"
    # The 5-seed set and the scaling sweep: one configuration per report row. (The timing and
    # RCP measurement trees repeat the system name with other settings, which a report row
    # would mix.)
    for part in ("amd-epyc-2c", "sweeps"):
        shutil.copytree(REPO / "results" / part, root / part)
    shutil.copytree(root / "amd-epyc-2c", root / SECOND)
    for config in (root / SECOND).rglob("config.json"):
        obj = json.loads(config.read_text())
        obj["resolved"]["system"] = SECOND  # the same runs, recorded as made on another machine
        config.write_text(json.dumps(obj, indent=2))
    return root


@pytest.fixture(scope="module")
def site(tree) -> Path:
    out = tree.parent / "site"
    proc = run_cli("report", str(tree), "--html", str(out), check=True, timeout=600)
    assert proc.stdout.strip() == f"wrote {out / 'index.html'}"
    return out


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium from Debian's packages, installed here when missing and root."""
    if browser.chromium_path() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["sh", str(REPO / "scripts" / "install_chromium.sh")], check=True, timeout=1800)
    path = browser.chromium_path()
    if path is None:
        if IN_CI:
            pytest.fail(
                "Chromium is missing and could not be installed (scripts/install_chromium.sh, as root)"
            )
        pytest.skip("Chromium not installed (scripts/install_chromium.sh, as root)")
    return path


def _cells(page, selector: str) -> list[dict]:
    """{data-col: [data-value parsed, visible text]} for each row of the table(s) at `selector`."""
    return page.evaluate(
        f"""[...document.querySelectorAll({json.dumps(selector)} + ' tbody tr')].map(tr => Object.fromEntries(
            [...tr.querySelectorAll('[data-col]')].map(td =>
                [td.dataset.col, [JSON.parse(td.dataset.value), td.innerText.trim()]])))"""
    )


def _groups(tree: Path) -> int:
    rows = json.loads(run_cli("report", str(tree), "--format", "json", check=True).stdout)["rows"]
    return len({(r["benchmark"], r["dataset"], r["threshold_spec"]) for r in rows})


def _secs(v) -> str:
    return "not reached" if v is None else f"{v:,.2f} s"


def _shown(row: dict, col: str, spec: str) -> str:
    """What the report page shows for a TTA/ATTMT cell: '-' without a target/thresholds or
    without a scored run (failed/interrupted runs only), 'not reached' when scored runs missed."""
    if row[spec] is None or (row[col] is None and not row["scored"]):
        return "-"
    return _secs(row[col])


def _check_report_table(page, tree: Path) -> None:
    rows = json.loads(run_cli("report", str(tree), "--format", "json", check=True).stdout)["rows"]
    keys = page.evaluate(
        "[...document.querySelectorAll('#report tbody tr')].map(tr => JSON.parse(tr.dataset.key))"
    )
    assert keys == [
        [r[k] for k in ("system", "benchmark", "division", "dataset", "workers", "network", "setting")]
        for r in rows
    ]
    shown = _cells(page, "#report")
    assert len(shown) == len(rows) and {r["system"] for r in rows} >= {"amd-epyc-2c", SECOND}
    for row, cells in zip(rows, shown):
        for col, (value, _text) in cells.items():
            assert value == row[col], (col, value, row[col])
        assert cells["tta_s"][1].startswith(_shown(row, "tta_s", "target"))
        assert cells["attmt_s"][1].startswith(_shown(row, "attmt_s", "threshold_spec"))
        assert cells["final_accuracy"][1] == f"{100 * row['final_accuracy']:.2f}%"
        assert {"workers", "runs", "target", "tta_s", "threshold_spec", "attmt_s", "final_accuracy"} <= set(
            cells
        )


def _check_comparison_between_systems(page, tree: Path) -> None:
    seeds = "amd-epyc-2c/resnet20/closed"
    expect = json.loads(
        run_cli(
            "compare", str(tree / seeds), str(tree / SECOND / "resnet20" / "closed"), "--json", check=True
        ).stdout
    )["rows"]
    tables = page.evaluate(
        "[...document.querySelectorAll('table.compare')].map((t, i) => [t.dataset.a, t.dataset.b, i])"
    )
    (index,) = [i for a, b, i in tables if a.startswith("amd-epyc-2c") and b.startswith(SECOND)]
    rows = page.evaluate(
        f"""[...document.querySelectorAll('table.compare')[{index}].querySelectorAll('tbody tr')].map(tr =>
            Object.fromEntries([...tr.querySelectorAll('[data-col]')].map(td =>
                [td.dataset.col, JSON.parse(td.dataset.value)])))"""
    )
    assert rows == expect  # same runs twice: every ratio is exactly 1
    assert [r["attmt_ratio"] for r in rows] == [1.0] * len(rows)


def _check_run_page(page, run_dir: Path, site: Path) -> None:
    curve = results_format.read_curve(str(run_dir))
    shown = _cells(page, "#curve")
    assert [{k: v[0] for k, v in row.items()} for row in shown] == [
        {k: r[k] for k in ("epoch", "step", "samples", "train_time_s", "total_time_s", "accuracy")}
        for r in curve
    ]
    links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
    raw = [u for u in links if u.rsplit("/", 1)[-1] in results_format.RUN_FILES]
    assert sorted(u.rsplit("/", 1)[-1] for u in raw) == sorted(results_format.RUN_FILES)
    for u in raw:
        copy = Path(u.removeprefix("file://"))
        assert site in copy.parents and copy.read_bytes() == (run_dir / copy.name).read_bytes()


@pytest.mark.slow
def test_site_in_a_real_browser(tree, site, chromium):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = sorted((site / "runs").glob("*.html"))
    assert len(pages) == len(results_format.find_run_dirs(str(tree))) > 5
    with browser.Browser(chromium) as b:
        index = b.open((site / "index.html").as_uri())
        assert index.errors == []
        assert index.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        # one figure per group of comparable rows: benchmark, data set, threshold spec
        assert index.evaluate("document.images.length") == _groups(tree)
        assert "Valid" in index.evaluate("document.querySelector('#validation').innerText")
        _check_report_table(index, tree)
        _check_comparison_between_systems(index, tree)
        for href in index.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"):
            if href.startswith("file://"):
                assert Path(href.removeprefix("file://").split("#")[0]).exists(), href
        index.screenshot(str(ARTIFACTS / "index.png"))
        for i, path in enumerate(pages):
            page = b.open(path.as_uri())
            assert page.errors == [], (path.name, page.errors)
            assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            run_dir = tree / page.evaluate("document.querySelector('#run-path').innerText")
            assert run_dir.name == path.stem.split("-", 1)[1]
            _check_run_page(page, run_dir, site)
            if i == 0:
                page.screenshot(str(ARTIFACTS / "run.png"))
    for shot in ("index.png", "run.png"):
        data = (ARTIFACTS / shot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, shot


@pytest.mark.slow
def test_the_browser_check_sees_errors(tmp_path, chromium):
    """The check above can fail: a script error and a missing image are both reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><title>x</title><img src="missing.svg"><script>no_such_function()</script>'
    )
    with browser.Browser(chromium) as b:
        errors = b.open(bad.as_uri()).errors
    assert any("no_such_function" in e for e in errors), errors
    assert any("missing.svg" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors


def test_site_files_and_what_readers_see(tree, site):
    assert (site / results_format.REPORT_SITE_MARK).is_file()
    html = (site / "index.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # offline
    assert "<style>" in html
    assert len(list((site / "plots").glob("*.svg"))) == _groups(tree)
    # A folder holding both the tree and the site: the copies of run files in the site are no runs.
    listed = json.loads(run_cli("runs", str(tree.parent), "--json", check=True).stdout)["runs"]
    assert len(listed) == len(results_format.find_run_dirs(str(tree))) > 5
    assert not any(str(site) in r["path"] for r in listed)


def test_rewriting_replaces_the_old_site_whole(tree, tmp_path):
    out = tmp_path / "site"
    run_cli("report", str(tree / "amd-epyc-2c"), "--html", str(out), check=True, timeout=600)
    first = sorted(p.name for p in (out / "runs").glob("*.html"))
    run_cli(
        "report",
        str(tree / SECOND / "resnet20" / "closed" / first[0].split("-", 1)[1].removesuffix(".html")),
        "--html",
        str(out),
        check=True,
        timeout=600,
    )
    assert len(list((out / "runs").glob("*.html"))) == 1 and len(first) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]  # no temporary folder left


@pytest.mark.parametrize(
    "where, message",
    [
        ("inside", "choose a folder outside"),
        ("foreign", "folder exists and is not a report written by ttabench"),
        ("no-parent", "parent folder does not exist"),
    ],
)
def test_user_errors(tree, tmp_path, where, message):
    out = {
        "inside": tree / "site",
        "foreign": tmp_path / "mine",
        "no-parent": tmp_path / "a" / "b",
    }[where]
    if where == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    proc = run_cli("report", str(tree), "--html", str(out), timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("ttabench: error: --html ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    if where == "foreign":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_failed_run_without_curve_and_no_torch(tmp_path):
    """A run that failed before its first evaluation gets a page and is reported as failed, without
    failing the verdict on the other runs; building the site imports no torch (a pure reader)."""
    root = tmp_path / "results"
    good = next((REPO / "results" / "amd-epyc-2c").rglob("curve.csv")).parent
    shutil.copytree(
        good.parents[2],
        root / "amd-epyc-2c",
        ignore=lambda d, names: [
            n for n in names if (Path(d) / n).is_dir() and n.startswith("2026") and n != good.name
        ],
    )
    failed = root / "amd-epyc-2c" / "resnet20" / "closed" / "20990101-000000-abcdef"
    failed.mkdir()
    summary = {"status": "failed", "error": "rank 1 killed by SIGKILL", "benchmark": "resnet20"}
    (failed / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "site"
    code = (
        "import sys; from ttabench.launch.cli import main; "
        f"rc = main(['report', {str(root)!r}, '--html', {str(out)!r}]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    page = (out / "runs" / f"000-{failed.name}.html").read_text()
    assert 'class="badge failed"' in page and "rank 1 killed by SIGKILL" in page
    assert "no curve.csv (no evaluation was recorded)" in page
    assert 'href="000-20990101-000000-abcdef/summary.json"' in page
    index = (out / "index.html").read_text()
    assert "Not valid" not in index and ">Valid<" in index
    assert "run failed (rank 1 killed by SIGKILL): recorded, not a result" in index


def test_headline_comparison_is_at_the_highest_threshold_both_reached():
    from ttabench.divisions.scoring import Run
    from ttabench.launch.commands import html

    def run(name, points):
        return Run(name, [{"train_time_s": t, "accuracy": a} for t, a in points])

    def row(system):
        return {
            "system": system, "benchmark": "resnet20", "division": "closed", "dataset": "cifar10",
            "workers": 1, "network": "loopback", "algorithm": "allreduce", "setting": "",
            "threshold_spec": "0.2:0.5:0.1",
        }  # fmt: skip

    a, b = row("a"), row("b")
    # A reaches 40 %, B only 30 %: 50 % (the spec's top) and 40 % give no ratio
    scored = {
        html._row_key(a): [run("a1", [(10.0, 0.25), (20.0, 0.35), (30.0, 0.45)])],
        html._row_key(b): [run("b1", [(5.0, 0.22), (40.0, 0.31)])],
    }
    (sec,) = html._sections([a, b], scored, None)
    (c,) = sec["comparisons"]
    assert c["both_reached"] and c["last"]["threshold"] == 0.3
    assert (c["last"]["tta_a"], c["last"]["tta_b"], c["last"]["tta_ratio"]) == (20.0, 40.0, 2.0)
    assert c["last"]["attmt_ratio"] == pytest.approx((5.0 + 40.0) / 2 / ((10.0 + 20.0) / 2), rel=1e-12)
    # nobody reached anything: the top threshold, marked as such on the page
    scored[html._row_key(b)] = [run("b1", [(5.0, 0.1)])]
    (c,) = html._sections([a, b], scored, None)[0]["comparisons"]
    assert not c["both_reached"] and c["last"]["threshold"] == 0.5
