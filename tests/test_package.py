"""The wheel built from this repository installs `ttabench` and nothing else.

The build runs on a copy of the source tree (without .venv, .git and build
outputs) so that it neither reads stale build/ folders nor leaves any behind
in the working tree.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_IGNORE = shutil.ignore_patterns(
    ".venv",
    "venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "results",
    "demo-results",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    root = tmp_path_factory.mktemp("pkg")
    src, out = root / "src", root / "out"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name.startswith("ttabench-")
    z = zipfile.ZipFile(wheels[0])
    yield z
    z.close()


def _dist_info(z: zipfile.ZipFile) -> str:
    infos = {n.split("/")[0] for n in z.namelist() if n.split("/")[0].endswith(".dist-info")}
    assert len(infos) == 1, infos
    return infos.pop()


@pytest.mark.slow
def test_only_top_level_package_is_ttabench(wheel):
    tops = {n.split("/")[0] for n in wheel.namelist()}
    info = _dist_info(wheel)
    assert tops == {"ttabench", info}, f"unexpected top-level entries: {tops - {'ttabench', info}}"
    top_level = wheel.read(f"{info}/top_level.txt").decode().split()
    assert top_level == ["ttabench"]


@pytest.mark.slow
def test_wheel_contains_the_three_source_folders(wheel):
    names = set(wheel.namelist())
    for required in (
        "ttabench/__init__.py",
        "ttabench/__main__.py",
        "ttabench/launch/__init__.py",
        "ttabench/launch/worker/main.py",
        "ttabench/launch/cli.py",
        "ttabench/launch/procs.py",
        "ttabench/launch/worker/loop.py",
        "ttabench/launch/net/lab.py",
        "ttabench/launch/commands/run.py",
        "ttabench/reference_impls/__init__.py",
        "ttabench/reference_impls/resnet.py",
        "ttabench/reference_impls/cifar10.py",
        "ttabench/divisions/__init__.py",
        "ttabench/divisions/metrics.py",
        "ttabench/divisions/results.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    # every module of the source folders and their sub-packages made it into the wheel
    for folder in ("launch", "reference_impls", "divisions"):
        for py in (REPO / folder).rglob("*.py"):
            assert f"ttabench/{py.relative_to(REPO).as_posix()}" in names, py


@pytest.mark.slow
def test_wheel_has_no_tests_benchmarks_or_repo_files(wheel):
    for n in wheel.namelist():
        parts = n.split("/")
        assert "tests" not in parts and "benchmarks" not in parts and "results" not in parts, n
        assert "conftest.py" not in parts, n
        assert not n.endswith((".pyc", ".sh", "Makefile", "setup.cfg", "pyproject.toml")), n


@pytest.mark.slow
def test_console_script_entry_point(wheel):
    info = _dist_info(wheel)
    cp = configparser.ConfigParser()
    cp.read_string(wheel.read(f"{info}/entry_points.txt").decode())
    assert dict(cp["console_scripts"]) == {"ttabench": "ttabench.launch.cli:main"}


@pytest.mark.slow
def test_wheel_metadata_names_the_dependencies(wheel):
    info = _dist_info(wheel)
    meta = wheel.read(f"{info}/METADATA").decode()
    assert "Name: ttabench" in meta
    requires = [
        line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")
    ]
    for dep in ("torch", "numpy", "rich", "mlperf-logging", "matplotlib", "jinja2"):
        assert any(r.startswith(dep) for r in requires), (dep, requires)


@pytest.mark.slow
def test_wheel_has_the_html_report_templates(wheel):
    names = set(wheel.namelist())
    for path in sorted((REPO / "launch" / "commands" / "templates").iterdir()):
        assert f"ttabench/launch/commands/templates/{path.name}" in names, (
            f"{path.name} missing from the wheel"
        )


def test_entry_point_target_exists():
    """setup.cfg's console script names a function that exists and answers --help."""
    import importlib

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    (line,) = [ln for ln in cfg["options.entry_points"]["console_scripts"].splitlines() if ln.strip()]
    name, target = (part.strip() for part in line.split("="))
    module, func = target.split(":")
    assert name == "ttabench"
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
