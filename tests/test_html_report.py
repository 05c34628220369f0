"""`ttabench report --html`: the site of the committed results, opened in a real headless Chromium
(Playwright for Python driving the system's Chromium) the way a reader uses it.

The site is built once per module from two trees: the repository's committed results/ and a
second tree holding results/amd-epyc-2c once more under another system name, so the comparison
page has two systems to set side by side. The page is loaded once at 1366x768 (a laptop) and
shared by the browser tests: the key columns fit the viewport, every study has its heading and
figure, a click on a column header sorts, a row opens its run page, and nothing logs an error.
Screenshots go to the git-ignored artifacts folder ($TTABENCH_ARTIFACTS_DIR, default artifacts/
in the repository), printed by the test that writes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, run_cli

from ttabench.divisions import results as results_format

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TTABENCH_ARTIFACTS_DIR") or REPO / "artifacts") / "html-report"
SECOND = "other-2c"
VIEWPORT = {"width": 1366, "height": 768}
KEY_COLUMNS = ("tta_s", "attmt_s", "final_accuracy", "throughput_img_s")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> list[Path]:
    other = tmp_path_factory.mktemp("html") / "other-results"
    shutil.copytree(REPO / "results" / "amd-epyc-2c", other / SECOND)
    for config in (other / SECOND).rglob("config.json"):
        obj = json.loads(config.read_text())
        obj["resolved"]["system"] = SECOND  # the same runs, recorded as made on another machine
        config.write_text(json.dumps(obj, indent=2))
    return [REPO / "results", other]


@pytest.fixture(scope="module")
def site(trees) -> Path:
    out = trees[1].parent / "site"
    proc = run_cli("report", *map(str, trees), "--html", str(out), check=True, timeout=900)
    assert proc.stdout.strip() == f"wrote {out / 'index.html'}"
    assert proc.stderr == ""  # no library warning on the user's terminal
    return out


@pytest.fixture(scope="module")
def report_rows(trees) -> list[dict]:
    return json.loads(run_cli("report", *map(str, trees), "--format", "json", check=True).stdout)["rows"]


def subset_runs(tree: Path) -> int:
    """The runs of a tree whose config.json says they trained on the real CIFAR-10 subset: each
    carries validate's subset warning (counted from the files, so a rerun study keeps it true)."""
    count = 0
    for run in results_format.find_run_dirs(str(tree)):
        try:
            data = json.loads((Path(run) / "config.json").read_text()).get("data") or {}
        except (OSError, ValueError):
            continue
        count += data.get("name") == "cifar10-subset" and data.get("synthetic") is False
    return count


def _chromium() -> str:
    """Chromium from Debian's packages (scripts/install_test_tools.sh installs it, as root)."""
    if shutil.which("chromium") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["sh", str(REPO / "scripts" / "install_test_tools.sh")], check=True, timeout=1800)
    path = shutil.which("chromium")
    if path is None:
        if IN_CI:
            pytest.fail(
                "Chromium is missing and could not be installed (scripts/install_test_tools.sh, as root)"
            )
        pytest.skip("Chromium not installed (scripts/install_test_tools.sh, as root)")
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e .[test])"
    )
    path = _chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page of the site with every console error, uncaught exception and failed request it saw."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport=VIEWPORT)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"{r.url}: {r.failure}"))
        self.page.goto(url, wait_until="load")

    def evaluate(self, js: str):
        return self.page.evaluate(js)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """The screenshot folder, emptied of an earlier run's screenshots (CI keeps it as an artifact)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="module")
def index(browser, site) -> Page:
    return Page(browser, (site / "index.html").as_uri())


@pytest.mark.slow
def test_key_columns_fit_a_laptop_screen_and_a_screenshot_is_kept(index, artifacts, capsys):
    shot = artifacts / "index-1366x768.png"
    index.page.screenshot(path=str(shot))
    with capsys.disabled():  # shown on a passing run too: CI keeps the folder as an artifact
        print(f"\nreport screenshots: {artifacts}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert index.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]  # no sideways scroll
    edges = index.evaluate(
        """[...document.querySelectorAll('table.report td[data-col]')].map(td =>
            [td.dataset.col, td.getBoundingClientRect().left, td.getBoundingClientRect().right])"""
    )
    key = [e for e in edges if e[0] in KEY_COLUMNS]
    assert {e[0] for e in key} == set(KEY_COLUMNS)
    assert [e for e in key if e[1] < 0 or e[2] > VIEWPORT["width"]] == []
    assert index.errors == []


@pytest.mark.slow
def test_rows_are_grouped_by_study_with_the_numbers_of_the_json_report(index, report_rows, trees):
    studies = index.evaluate(
        """[...document.querySelectorAll('section.study')].map(s => ({
            title: s.querySelector('h2').firstChild.textContent.trim(),
            rows: s.querySelectorAll('table.report tbody tr').length,
            figures: [...s.querySelectorAll('figure img')].filter(i => i.complete && i.naturalWidth > 0).length}))"""
    )
    titles = [s["title"] for s in studies]
    for study in (
        "results/sweeps",
        "results/predict/runs",
        "results/rcp-runs",
        "results/network",
        f"other-results/{SECOND}",
    ):
        assert study in titles, titles
    assert all(s["rows"] and s["figures"] for s in studies), studies
    keys = index.evaluate(
        "[...document.querySelectorAll('table.report tbody tr')].map(tr => JSON.parse(tr.dataset.key))"
    )
    describe = ("system", "benchmark", "division", "dataset", "workers", "network", "algorithm", "setting")
    assert sorted(map(json.dumps, keys)) == sorted(json.dumps([r[k] for k in describe]) for r in report_rows)
    cells = index.evaluate(
        """[...document.querySelectorAll('table.report tbody tr')].map(tr => Object.fromEntries(
            [...tr.querySelectorAll('[data-col]')].map(td => [td.dataset.col, [td.dataset.value, td.innerText.trim()]])))"""
    )
    by_key = {json.dumps([r[k] for k in describe]): r for r in report_rows}
    for key, row_cells in zip(keys, cells):
        row = by_key[json.dumps(key)]
        for col in ("runs", "tta_s", "attmt_s", "final_accuracy", "throughput_img_s"):
            value, _ = row_cells[col]
            assert json.loads(value) == row[col], (key, col)
        assert row_cells["algorithm"][1] == row["algorithm"]
    # the identical "CIFAR-10 subset" warnings of both trees are one line with their count
    warnings = index.evaluate(
        "[...document.querySelectorAll('#warnings > li summary')].map(s => s.innerText)"
    )
    subset = [w for w in warnings if "CIFAR-10 subset" in w]
    assert len(subset) == 1 and subset[0].startswith(f"{subset_runs(trees[0]) + subset_runs(trees[1])} runs")


@pytest.mark.slow
def test_a_click_on_a_column_header_sorts_the_rows(index):
    table = "section.study:has(tbody tr:nth-child(20)) table.report"  # a study with many rows
    col = index.evaluate(
        f"[...document.querySelector('{table}').tHead.rows[0].cells].findIndex(th => th.innerText.trim() === 'img/s')"
    )
    values = f"""[...document.querySelector('{table}').tBodies[0].rows].map(tr =>
        JSON.parse(tr.cells[{col}].dataset.value))"""
    before = index.evaluate(values)
    assert before != sorted(before)
    header = index.page.locator(table).locator("thead th").nth(col)
    header.click()
    assert index.evaluate(values) == sorted(before)
    header.click()
    assert index.evaluate(values) == sorted(before, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"


@pytest.mark.slow
def test_a_row_opens_its_run_page(index, browser, site):
    row = index.page.locator("table.report tbody tr").first
    row.locator("td.label summary").click()
    link = row.locator("a.run-link").first
    assert link.is_visible()
    name = link.inner_text()
    link.click()
    index.page.wait_for_load_state("load")
    assert index.page.url.endswith(".html") and "/runs/" in index.page.url
    run_dir = REPO / "results" / index.evaluate("document.querySelector('#run-path').innerText")
    assert run_dir.name == name and (run_dir / "summary.json").is_file()
    assert index.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    raw = index.evaluate("[...document.querySelectorAll('#raw-files a')].map(a => a.href)")
    for u in raw:
        copy = Path(u.removeprefix("file://"))
        assert site in copy.parents and copy.read_bytes() == (run_dir / copy.name).read_bytes()
    assert index.errors == []
    index.page.go_back()


@pytest.mark.slow
def test_the_comparison_page_sets_two_systems_side_by_side(browser, site, trees, artifacts):
    page = Page(browser, (site / "compare.html").as_uri())
    expect = json.loads(
        run_cli("compare", str(trees[0] / "amd-epyc-2c"), str(trees[1] / SECOND), "--json", check=True).stdout
    )["rows"]
    pairs = "section.pair[data-dim=system] table.compare"
    tables = page.evaluate(f"[...document.querySelectorAll('{pairs}')].map(t => [t.dataset.a, t.dataset.b])")
    assert [(a.split()[0], b.split()[0]) for a, b in tables] == [("amd-epyc-2c", SECOND)]
    rows = page.evaluate(
        f"""[...document.querySelectorAll('{pairs} tbody tr')].map(tr =>
            Object.fromEntries([...tr.querySelectorAll('[data-col]')].map(td =>
                [td.dataset.col, JSON.parse(td.dataset.value)])))"""
    )
    assert rows == expect  # the same runs twice: every ratio is exactly 1
    assert [r["attmt_ratio"] for r in rows] == [1.0] * len(rows)
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # each pair its figure (the algorithm study's pairs have theirs too)
    assert page.evaluate("document.querySelectorAll('section.pair[data-dim=system] img').length") == len(
        tables
    )
    pair_count = page.evaluate("document.querySelectorAll('section.pair').length")
    assert page.evaluate("document.images.length") == pair_count
    shot = artifacts / "compare-1366x768.png"
    page.page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []


@pytest.mark.slow
def test_the_browser_check_sees_errors(browser, tmp_path):
    """The checks above can fail: a script error and a missing image are both reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><title>x</title><img src="missing.svg"><script>no_such_function()</script>'
    )
    errors = Page(browser, bad.as_uri()).errors
    assert any("no_such_function" in e for e in errors), errors
    assert any("missing.svg" in e for e in errors), errors


def test_site_files_and_what_readers_see(trees, site):
    assert (site / results_format.REPORT_SITE_MARK).is_file()
    html = (site / "index.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # offline
    assert "<script src" not in html and "<style>" in html  # the sorting script and the style inline
    # A folder holding both the tree and the site: the copies of run files in the site are no runs.
    listed = json.loads(run_cli("runs", str(trees[1].parent), "--json", check=True).stdout)["runs"]
    assert len(listed) == len(results_format.find_run_dirs(str(trees[1]))) == 5
    assert not any(str(site) in r["path"] for r in listed)


def test_several_trees_in_every_format(trees, capsys):
    """report takes several trees: every row of each is in the markdown, CSV and JSON report."""
    from ttabench.launch.cli import main

    def report(*args: str) -> str:
        assert main(["report", *args]) == 0
        return capsys.readouterr().out

    one = [json.loads(report(str(t), "--format", "json"))["rows"] for t in trees]
    both = json.loads(report(*map(str, trees), "--format", "json"))
    assert both["results_dirs"] == list(map(str, trees)) and len(both["rows"]) == sum(map(len, one))
    # results_dir, the key of the one-tree report, names the first tree (the only one, for one tree)
    assert both["results_dir"] == str(trees[0])
    assert json.loads(report(str(trees[1]), "--format", "json"))["results_dir"] == str(trees[1])
    assert len(report(*map(str, trees), "--format", "csv").splitlines()) == 1 + len(both["rows"])
    md = report(*map(str, trees))
    assert f"| {SECOND} |" in md and "| amd-epyc-2c |" in md
    # a tree given twice, or inside another one given: its runs count once
    assert json.loads(report(*map(str, trees), str(trees[1]), "--format", "json"))["rows"] == both["rows"]
    proc = run_cli("report", str(trees[0]), str(trees[1] / "missing"))
    assert proc.returncode == 2 and proc.stdout == "" and "missing" in proc.stderr


def test_rewriting_replaces_the_old_site_whole(trees, tmp_path):
    out = tmp_path / "site"
    run_cli("report", str(trees[1]), "--html", str(out), check=True, timeout=600)
    first = sorted(p.name for p in (out / "runs").glob("*.html"))
    one = next((trees[1] / SECOND).rglob("summary.json")).parent
    run_cli("report", str(one), "--html", str(out), check=True, timeout=600)
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
def test_user_errors(trees, tmp_path, where, message):
    out = {
        "inside": trees[1] / "site",
        "foreign": tmp_path / "mine",
        "no-parent": tmp_path / "a" / "b",
    }[where]
    if where == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    proc = run_cli("report", str(trees[1]), "--html", str(out), timeout=600)
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
    # a submitted job that has not started: listed and given a page, not a crash
    waiting = root / "amd-epyc-2c" / "resnet20" / "closed" / "20990102-000000-fedcba"
    waiting.mkdir()
    (waiting / results_format.JOB_FILE).write_text("{}")
    out = tmp_path / "site"
    code = (
        "import sys; from ttabench.launch.cli import main; "
        f"rc = main(['report', {str(root)!r}, '--html', {str(out)!r}]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (job_page,) = (out / "runs").glob(f"*-{waiting.name}.html")
    assert "A submitted job that holds no run yet (submitted)." in job_page.read_text()
    page = (out / "runs" / f"001-{failed.name}.html").read_text()
    assert 'class="badge failed"' in page and "rank 1 killed by SIGKILL" in page
    assert "no curve.csv (no evaluation was recorded)" in page
    assert 'href="001-20990101-000000-abcdef/summary.json"' in page
    index = (out / "index.html").read_text()
    assert "Not valid" not in index and ">Valid<" in index
    assert "run failed (rank 1 killed by SIGKILL): recorded, not a result" in index


def test_headline_comparison_is_at_the_highest_threshold_both_reached():
    from ttabench.divisions.scoring import Run
    from ttabench.launch.commands import html_compare

    def run(name, points):
        return Run(name, [{"train_time_s": t, "accuracy": a} for t, a in points])

    def row(system):
        return {
            "system": system, "benchmark": "resnet20", "division": "closed", "dataset": "cifar10",
            "workers": 1, "network": "loopback", "algorithm": "allreduce", "setting": "",
            "threshold_spec": "0.2:0.5:0.1", "label": system, "what": {},
        }  # fmt: skip

    a, b = row("a"), row("b")
    # A reaches 40 %, B only 30 %: 50 % (the spec's top) and 40 % give no ratio
    scored = {
        html_compare.row_key(a): [run("a1", [(10.0, 0.25), (20.0, 0.35), (30.0, 0.45)])],
        html_compare.row_key(b): [run("b1", [(5.0, 0.22), (40.0, 0.31)])],
    }
    (c,) = html_compare.pairs([a, b], scored, None)
    assert c["dim"] == "system" and c["both_reached"] and c["last"]["threshold"] == 0.3
    assert (c["last"]["tta_a"], c["last"]["tta_b"], c["last"]["tta_ratio"]) == (20.0, 40.0, 2.0)
    assert c["last"]["attmt_ratio"] == pytest.approx((5.0 + 40.0) / 2 / ((10.0 + 20.0) / 2), rel=1e-12)
    # nobody reached anything: the top threshold, marked as such on the page
    scored[html_compare.row_key(b)] = [run("b1", [(5.0, 0.1)])]
    (c,) = html_compare.pairs([a, b], scored, None)
    assert not c["both_reached"] and c["last"]["threshold"] == 0.5
    # the same configuration with another algorithm is a pair too; another setting is not
    c2 = dict(b, system="a", algorithm="powersgd", what={"algorithm": "powersgd", "powersgd_rank": 2})
    scored[html_compare.row_key(c2)] = scored[html_compare.row_key(a)]
    assert [p["dim"] for p in html_compare.pairs([a, c2], scored, None)] == ["algorithm"]
    c2["what"]["batch_size"] = 64
    assert html_compare.pairs([a, c2], scored, None) == []


def test_studies_labels_and_descriptions_of_the_committed_results():
    """The report page's groups, without a browser: each study of results/ with the labels its
    folders give, the description its README gives, and what its rows differ in."""
    from ttabench.divisions import experiments, scoring, validate
    from ttabench.launch.commands import html_studies

    tree = str(REPO / "results")
    groups = experiments.report_groups(scoring.load_inputs([tree], every_run=True))
    studies = {s["folder"]: s for s in html_studies.studies(groups, [tree])}
    assert {"amd-epyc-2c", "sweeps", "predict/runs", "rcp-runs", "network"} <= set(studies)
    assert sum(len(s["rows"]) for s in studies.values()) == len(groups)
    assert [r["label"] for r in studies["rcp-runs"]["rows"]] == ["bs128", "bs256"]
    sweeps = studies["sweeps"]
    assert sorted(r["label"] for r in sweeps["rows"]) == sorted(
        f"w{w}-{n}" for w in (1, 2) for n in ("10gbe", "1gbe", "100mbit")
    )
    assert sweeps["varies"] == {"workers": ["1", "2"], "network": ["1gbe", "10gbe", "100mbit"]}
    assert sweeps["shared"] == {
        "system": "amd-epyc-2c", "benchmark": "resnet20", "division": "closed", "dataset": "cifar10-subset"
    }  # fmt: skip
    # results/predict holds runs/ and training-runs/: one study each, labelled below that folder
    predict = studies["predict/runs"]
    assert {r["label"] for r in predict["rows"]} >= {
        "emulated-20mbit-r1",
        "1worker-r0",
        "straggler-1-2-loopback-r0",
    }
    assert "predict" not in studies and "training-runs" not in {
        r["label"].split("/")[0] for r in predict["rows"]
    }
    # the study's own README first, else the paragraph of its parent's README naming it, else the
    # parent's first paragraph, else the line of the tree's README table naming its folder
    assert predict["description"].startswith("How close the what-if model")
    if "predict/training-runs" in studies:  # the README paragraph naming `training-runs/`, when one does
        named = "`training-runs/`" in (REPO / "results" / "predict" / "README.md").read_text()
        described = studies["predict/training-runs"]["description"]
        assert ("training-runs/" in described) if named else described == predict["description"]
    # a description longer than a few lines ends at a sentence, else after a whole word
    cut = [s["description"] for s in studies.values() if (s["description"] or "").endswith("…")]
    assert all(d.endswith(" …") for d in cut), cut
    assert studies["network"]["description"].startswith("2-namespace torchrun")
    labels = [r["label"] for s in studies.values() for r in s["rows"]]
    # short: a run folder's own name at most (the longest committed, 35 characters, is
    # decentralized-netlab-tbf-100mbit-r0); the browser test checks the columns still fit 1366 px
    assert [x for x in labels if len(x) > 40 or "=" in x or "--" in x] == []
    folded = html_studies.folded_warnings(validate.validate(tree).warnings)
    (subset,) = [w for w in folded if "CIFAR-10 subset" in w["message"]]
    assert len({w["message"] for w in folded}) == len(folded)  # each message once
    assert subset["count"] == subset_runs(REPO / "results") > 0 and "CIFAR-10 subset" in subset["message"]


def test_ci_prints_the_screenshot_folder_pass_or_fail(tmp_path):
    """.ci/run ends by naming the folder the browser tests fill, also when the suite fails."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"  # `make demo` passes, `make test` fails
    make.write_text('#!/bin/sh\n[ "$1" = demo ] && exit 0\necho "suite failed"; exit 1\n')
    make.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "TTABENCH_ARTIFACTS_DIR"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1 and "suite failed" in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith(f"{tmp_path / 'artifacts' / 'html-report'}")
