"""The division rules of --algorithm: the closed division accepts the reference algorithms
within their ranges; report and compare keep algorithms apart; RCPs are per algorithm."""

from __future__ import annotations

import json

from test_rcp import reference_runs, write_run
from test_readers import make_run

from ttabench.divisions import experiments, rules, scoring


def _algorithm_problems(cfg: dict, world: int = 2, backend: str = "torchrun", **resolved) -> list:
    config = {"config": cfg, "resolved": {"world_size": world, "backend": backend, **resolved}}
    return [m for m, _ in rules.check_closed(config) if "algorithm" in m]


def test_closed_division_accepts_the_references_within_their_ranges():
    assert _algorithm_problems({}) == []  # a run from before --algorithm: allreduce
    assert _algorithm_problems({"algorithm": "powersgd", "powersgd_rank": 4}) == []
    assert _algorithm_problems({"algorithm": "decentralized"}, world=4) == []
    assert _algorithm_problems({"algorithm": "fp16"}, backend="horovod") == []
    assert (
        _algorithm_problems({"algorithm": "topk", "topk_ratio": 0.05}, algorithm_params={"topk_ratio": 0.05})
        == []
    )


def test_closed_division_refuses_what_is_out_of_range():
    assert _algorithm_problems({"algorithm": "topk", "topk_ratio": 1.5}) == [
        "closed division: algorithm: --topk-ratio must be in (0, 1), got 1.5"
    ]
    (msg,) = _algorithm_problems({"algorithm": "decentralized"}, world=2)
    assert "needs at least 3 workers" in msg
    (msg,) = _algorithm_problems({"algorithm": "sign-sgd"})
    assert "unknown --algorithm 'sign-sgd'" in msg
    (msg,) = _algorithm_problems({"algorithm": "allreduce", "local_steps": 8})
    assert "--local-steps is a parameter of --algorithm local-sgd" in msg
    (msg,) = _algorithm_problems({"algorithm": "topk"}, algorithm_params={"topk_ratio": 0.5})
    assert "are not the parameters given with their defaults" in msg


def _set_algorithm(folder, name: str, params: dict) -> None:
    for file, where in (("config.json", ("config",)), ("summary.json", ())):
        d = json.loads((folder / file).read_text())
        target = d.setdefault(where[0], {}) if where else d
        if where:
            target.update({"algorithm": name, **params})
        else:
            target.update({"algorithm": name, "algorithm_params": params})
        (folder / file).write_text(json.dumps(d))


def test_report_keeps_algorithms_apart(tmp_path):
    root = tmp_path / "results"
    points = [(10.0, 0.5), (20.0, 0.7), (30.0, 0.85)]
    make_run(root, "sys", "a1", points, seed=1)
    make_run(root, "sys", "a2", points, seed=2)
    _set_algorithm(make_run(root, "sys", "t1", points, seed=3), "topk", {"topk_ratio": 0.05})
    rows = experiments.report_rows(scoring.load_inputs([str(root)], every_run=True))
    assert sorted((r["algorithm"], r["runs"]) for r in rows) == [
        ("allreduce", 2),
        ("topk topk_ratio=0.05", 1),
    ]


def test_compare_refuses_a_side_of_mixed_algorithms(tmp_path, cli):
    points = [(10.0, 0.5), (20.0, 0.7), (30.0, 0.85)]
    mixed, plain = tmp_path / "mixed", tmp_path / "plain"
    make_run(mixed, "sys", "a1", points)
    _set_algorithm(make_run(mixed, "sys", "t1", points, seed=2), "topk", {"topk_ratio": 0.05})
    make_run(plain, "sys", "a1", points)
    proc = cli("compare", str(mixed), str(plain))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "holds runs of several algorithms (allreduce; topk topk_ratio=0.05)" in proc.stderr
    ok = cli("compare", str(plain), str(plain), check=True)
    assert "algorithm allreduce" in ok.stdout


def test_rcps_are_per_algorithm(tmp_path, cli):
    refs = reference_runs(tmp_path, 128, 4.0)
    out = tmp_path / "rcps.json"
    cli("rcp", "build", str(refs), "--target", "0.45", "-o", str(out), check=True)
    (record,) = json.loads(out.read_text()).values()
    assert record["Hyperparams"]["algorithm"] == "allreduce"
    sub = tmp_path / "sub"
    for i in range(5):
        write_run(sub, f"s{i}", batch=128, epochs_at=4.5)
    assert cli("rcp", "check", str(sub), "--rcps", str(out)).returncode == 0
    _set_algorithm(sub / "s0", "powersgd", {"powersgd_rank": 2, "powersgd_start_step": 10})
    proc = cli("rcp", "check", str(sub), "--rcps", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "algorithm powersgd powersgd_rank=2 powersgd_start_step=10, but the RCPs are for allreduce" in (
        proc.stderr
    )
    _set_algorithm(refs / "r0", "fp16", {})
    proc = cli("rcp", "build", str(refs), "--target", "0.45", "-o", str(tmp_path / "x.json"))
    assert (
        proc.returncode == 2
        and "runs of several algorithms (allreduce; fp16): RCPs are per algorithm" in (proc.stderr)
    )
    assert not (tmp_path / "x.json").exists()
