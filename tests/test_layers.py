"""The package's import graph, read from the source: layers point one way and nothing imports in a circle.

Every ``import`` and ``from ... import`` of every module counts, at the top, inside
a function or under ``if TYPE_CHECKING``: a dependency is a dependency, whenever
it is resolved. The layers, from the user down (a module may import its own layer
and any layer below it, never one above):

    commands   launch/cli.py, launch/commands/       what the user types
    launcher   launch/launcher.py, launch/cluster/   starts and supervises a run's workers
    worker     launch/worker/                        one worker: set-up, the timed loop
    record     launch/record/                        what a run writes and shows
    support    launch/config.py, cadence.py, flags.py, usage.py, procs.py, elastic.py, system.py, launch/net/
                                                     the typed run configuration, process
                                                     supervision, the machine, network models
    divisions  divisions/                            rules, metrics, the results layout (no torch)
    workloads  reference_impls/                      data, models, the closed recipe
    base       ttabench/__init__.py                  UserError
"""

from __future__ import annotations

import ast
import configparser
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# (module prefix, layer), the most specific prefix first; higher layers sit above lower ones.
LAYERS = [
    ("ttabench.__main__", 7),
    ("ttabench.launch.cli", 7),
    ("ttabench.launch.commands", 7),
    ("ttabench.launch.launcher", 6),
    ("ttabench.launch.cluster", 6),
    ("ttabench.launch.worker", 5),
    ("ttabench.launch.record", 4),
    ("ttabench.launch.config", 3),
    ("ttabench.launch.cadence", 3),
    ("ttabench.launch.flags", 3),
    ("ttabench.launch.usage", 3),
    ("ttabench.launch.procs", 3),
    ("ttabench.launch.elastic", 3),
    ("ttabench.launch.system", 3),
    ("ttabench.launch.net", 3),
    ("ttabench.launch", 3),  # the package's own __init__
    ("ttabench.divisions", 2),
    ("ttabench.reference_impls", 1),
    ("ttabench", 0),
]
NAMES = {
    7: "commands",
    6: "launcher",
    5: "worker",
    4: "record",
    3: "support",
    2: "divisions",
    1: "workloads",
    0: "base",
}


def package_modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name, from setup.cfg's package_dir."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    dirs = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        pkg, _, folder = (s.strip() for s in line.partition("="))
        dirs[pkg] = REPO / folder
    mods = {"ttabench": REPO / "__init__.py", "ttabench.__main__": REPO / "__main__.py"}
    for pkg, folder in dirs.items():
        if pkg == "ttabench":
            continue  # the top folder's sub-packages are mapped one by one
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = path
    return mods


MODULES = package_modules()


def _known(name: str) -> str:
    """The module a dotted name lives in (``a.b.func`` -> ``a.b``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str) -> set[tuple[str, int]]:
    """(imported package module, line) for every import statement of module `name`."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {(_known(t), node.lineno) for t in targets if t == "ttabench" or t.startswith("ttabench.")}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int:
    return next(rank for prefix, rank in LAYERS if name == prefix or name.startswith(prefix + "."))


def test_the_graph_sees_the_package():
    # the parser must find what is there, or the tests below pass on nothing
    assert len(MODULES) > 80
    assert "ttabench.launch.commands.run" in {t for t, _ in GRAPH["ttabench.launch.cli"]}
    assert "ttabench.divisions.results" in {t for t, _ in GRAPH["ttabench.divisions.checks"]}


def test_every_module_has_a_layer():
    for name in MODULES:
        assert layer(name) in NAMES, name


def test_no_module_imports_a_layer_above_it():
    upward = [
        f"{name} ({NAMES[layer(name)]}) imports {target} ({NAMES[layer(target)]}) at line {line}"
        for name, targets in sorted(GRAPH.items())
        for target, line in sorted(targets)
        if layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list that starts and ends with the same module), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    graph = {name: {t for t, _ in targets if t != name} for name, targets in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b2", "c"}, "b2": set(), "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_imports_of_reads_function_level_and_relative_imports(tmp_path, monkeypatch):
    src = tmp_path / "probe.py"
    src.write_text(
        "from __future__ import annotations\n"
        "import ttabench.divisions.metrics\n"
        "def f():\n"
        "    from ttabench.launch import procs\n"
        "    from . import loop\n"
        "if True:\n"
        "    from ttabench.launch.worker.loop import LoopState\n"
    )
    monkeypatch.setitem(MODULES, "ttabench.launch.worker.probe", src)
    assert imports_of("ttabench.launch.worker.probe") == {
        ("ttabench.divisions.metrics", 2),
        ("ttabench.launch.procs", 4),
        ("ttabench.launch.worker.loop", 5),
        ("ttabench.launch.worker.loop", 7),
    }


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports(name):
    # every module is imported by at least one test, those only the CLI reaches as well
    if name == "ttabench.launch.cluster.torchx":
        pytest.importorskip("torchx")  # an optional dependency (`pip install ttabench[torchx]`)
    assert importlib.import_module(name).__name__ == name


def test_no_two_modules_share_a_file_name():
    # a name says which module it is: launch/commands/ and divisions/ once had two metrics.py
    seen: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(name)
    assert {f: names for f, names in seen.items() if len(names) > 1} == {}


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
