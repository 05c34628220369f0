"""`ttabench validate` and the MLPerf compliance rules: pure checks on hand-made data, and
real run folders (tiny real runs on the CIFAR-10 subset and on synthetic data) that pass,
and copies of them that are broken one way each and must fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from ttabench.divisions import metrics
from ttabench.divisions import validate as v
from ttabench.reference_impls.recipe import CLOSED

# --- pure checks ----------------------------------------------------------------------------


def closed_config(**changes) -> dict:
    cfg = {
        "config": {
            "benchmark": "resnet20",
            "division": "closed",
            "batch_size": 128,
            "thresholds": "0.1:0.3:0.1",
            "target": None,
            "time_budget": None,
        },
        "resolved": {"world_size": 2, "global_batch": 256, "peak_lr": 0.2, "precision": "fp32", "seed": 3},
        "model": {"name": "resnet20", "depth": 20, "version": 1},
        "recipe": CLOSED.to_dict(),
        "data": {
            "name": "cifar10",
            "synthetic": False,
            "full": True,
            "train_size": 50000,
            "test_size": 10000,
        },
    }
    for path, value in changes.items():
        node = cfg
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def test_closed_reference_config_passes():
    assert v.check_closed(closed_config()) == []


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"recipe__weight_decay": 5e-4}, "recipe weight_decay is 0.0005, the reference recipe says 0.0001"),
        ({"recipe__momentum": 0.95}, "recipe momentum is 0.95"),
        ({"recipe__decay_epochs": [80, 120]}, "recipe decay_epochs is [80, 120]"),
        (
            {"recipe__augmentation": "hflip"},
            'augmentation is "hflip", the reference recipe says "pad4-crop32-hflip"',
        ),
        ({"model__name": "vgg11"}, "model 'vgg11' is not a reference benchmark"),
        ({"data__synthetic": True, "data__name": "synthetic"}, "trained on synthetic data"),
        (
            {"config__batch_size": 1024, "resolved__global_batch": 2048, "resolved__peak_lr": 1.6},
            "batch per worker 1024 outside 32..512",
        ),
        ({"resolved__peak_lr": 0.4}, "peak learning rate 0.4"),
        ({"data__train_size": 45000}, "CIFAR-10 with 45000 train"),
        ({"resolved__precision": "fp8"}, "precision 'fp8' is not one the recipe allows (fp32, bf16, fp16)"),
        ({"resolved__precision": None}, "config.json does not record the precision"),
        ({"resolved__precision": "fp16", "resolved__device": "cpu"}, "fp16 is allowed on GPUs only"),
        (
            {"resolved__device": "cuda:0", "resolved__gpu_math": {"tf32_convolutions": True}},
            "precision fp32 with TF32 math on the GPU is not fp32",
        ),
    ],
)
def test_closed_rule_broken(change, expected):
    problems = v.check_closed(closed_config(**change))
    assert any(expected in msg and not warn for msg, warn in problems), problems


@pytest.mark.parametrize(
    "precision,device,gpu_math",
    [
        ("fp32", "cpu", None),
        ("bf16", "cpu", None),
        ("bf16", "cuda:0", {"tf32_convolutions": False, "tf32_matmul": False}),
        ("fp16", "cuda:1", {"tf32_convolutions": False, "tf32_matmul": False}),
        ("fp32", "cuda:0", {"tf32_convolutions": False, "tf32_matmul": False}),
    ],
)
def test_closed_precisions_allowed(precision, device, gpu_math):
    cfg = closed_config(resolved__precision=precision, resolved__device=device, resolved__gpu_math=gpu_math)
    assert v.check_closed(cfg) == []


def test_closed_subset_is_a_warning():
    problems = v.check_closed(
        closed_config(
            data__name="cifar10-subset", data__full=False, data__train_size=5085, data__test_size=1017
        )
    )
    assert len(problems) == 1
    msg, warn = problems[0]
    assert warn and "CIFAR-10 subset" in msg and "not the full benchmark" in msg


def test_check_seeds():
    problems = v.check_seeds({"r1": 5, "r2": 6, "r3": 5, "r4": None})
    lines = sorted(str(p) for p in problems)
    assert lines == [
        "r3: seed 5 is also the seed of r1, a run of the same configuration (seeds must be unique)",
        "r4: no seed recorded (summary.json seed / config.json resolved.seed)",
    ]


def rows(points):
    return [
        {
            "epoch": i,
            "step": i,
            "samples": 32 * i,
            "train_time_s": t,
            "total_time_s": t + 1,
            "accuracy": a,
            "loss": 1.0,
        }
        for i, (t, a) in enumerate(points, start=1)
    ]


def test_check_metrics_exact():
    curve = rows([(1.0, 0.1), (2.0, 0.25), (3.0, 0.2)])
    m = metrics.summary_block(curve, "0.1:0.3:0.1", 0.2, None)
    # by hand: TTA 1, 2, never; no ATTMT; target 0.2 at 2 s; final 0.2, best 0.25
    assert m["tta_s"] == [1.0, 2.0, None] and m["attmt_s"] is None and m["target_tta_s"] == 2.0
    assert (m["final_accuracy"], m["best_accuracy"]) == (0.2, 0.25)
    assert v.check_metrics(dict(m), curve, None) == []
    tampered = dict(m, tta_s=[1.0, 1.5, None])
    assert v.check_metrics(tampered, curve, None) == ["metrics.tta_s[1] is 1.5, recomputed 2.0"]
    assert v.check_metrics(dict(m, best_accuracy=0.3), curve, None) == [
        "metrics.best_accuracy is 0.3, recomputed 0.25"
    ]
    extra = v.check_metrics(dict(m, speedup=2.0), curve, None)
    assert extra == ["metrics.speedup is not a metric ttabench computes (cannot be recomputed)"]
    cfg = {"config": {"thresholds": "0.1:0.2:0.1", "target": 0.2, "time_budget": None}}
    assert "config.json's thresholds" in v.check_metrics(dict(m), curve, cfg)[0]


def test_mllog_vs_curve():
    curve = rows([(1.0, 0.1), (2.0, 0.25)])
    events = [
        {"key": "eval_accuracy", "value": 0.1, "metadata": {"train_time_s": 1.0, "samples": 32}},
        {"key": "eval_accuracy", "value": 0.25, "metadata": {"train_time_s": 2.0, "samples": 64}},
    ]
    assert v.check_mllog_vs_curve(events, curve) == []
    events[1]["value"] = 0.26
    assert v.check_mllog_vs_curve(events, curve) == [
        "evaluation 2: eval_accuracy 0.26, curve.csv accuracy 0.25"
    ]
    assert "1 eval_accuracy events, but curve.csv has 2" in v.check_mllog_vs_curve(events[:1], curve)[0]


def test_the_committed_results_tree_validates(capsys):
    # results/README.md: `ttabench validate results` accepts every folder, each run with the
    # subset warning only (every committed run trains on the CIFAR-10 subset). ~5 s, in-process.
    from ttabench.launch import cli

    results = str(Path(__file__).resolve().parent.parent / "results")
    code = cli.main(["validate", results, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and not out["failures"], out["failures"]
    assert len(out["runs"]) > 0 and all("CIFAR-10 subset" in w for w in out["warnings"]), out["warnings"]


def test_empty_folder_fails(tmp_path):
    result = v.validate(str(tmp_path))
    assert not result.ok and "no run folders found" in str(result.problems[0])


# --- real runs ------------------------------------------------------------------------------


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*/*") if p.is_dir())


# Both trained once per session (tests/conftest.py) and read by other modules too; a test that
# changes a run works on copy_of(...).


@pytest.fixture
def subset_tree(subset_runs) -> Path:
    """Two real closed-division runs on the CIFAR-10 subset (seeds 101 and 102)."""
    assert len(_run_dirs(subset_runs)) == 2
    return subset_runs


@pytest.fixture
def synthetic_tree(synthetic_run) -> Path:
    """One real closed-division run on the synthetic data set (never a valid closed result)."""
    root = synthetic_run[0]
    assert len(_run_dirs(root)) == 1
    return root


@pytest.fixture
def copy_of(tmp_path):
    def copy(root: Path) -> Path:
        dest = tmp_path / "results"
        shutil.copytree(root, dest)
        return dest

    return copy


def _validate_cli(path: Path):
    proc = run_cli("validate", str(path), timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj, indent=2))


@pytest.mark.slow
def test_real_subset_runs_pass(subset_tree):
    proc = _validate_cli(subset_tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith(f"OK: 2 runs under {subset_tree} (2 success), 2 warnings")
    # the only lines before it: the subset warnings, one per run
    assert all(": warning: closed division: trained on the CIFAR-10 subset" in ln for ln in lines[:-1])
    assert len(lines) == 3


@pytest.mark.slow
def test_single_run_folder_passes(subset_tree):
    run = _run_dirs(subset_tree)[0]
    proc = _validate_cli(run)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1].startswith("OK: 1 run under")


@pytest.mark.slow
def test_official_compliance_checker_passes_real_log(subset_tree, tmp_path):
    mllog = _run_dirs(subset_tree)[0] / "mllog.txt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlperf_logging.compliance_checker",
            "--config",
            v.RULES,
            str(mllog),
            "--log_output",
            str(tmp_path / "cc.log"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stderr and "closed.yaml" in proc.stderr


@pytest.mark.slow
def test_tampered_summary_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]

    def tamper(s):
        s["metrics"]["tta_s"][0] = s["metrics"]["tta_s"][0] * 0.9

    _edit_json(run / "summary.json", tamper)
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert f"{run}/summary.json: metrics.tta_s[0] is " in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("FAILED: 1 problem in 2 runs")


@pytest.mark.slow
def test_tampered_throughput_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[1]
    _edit_json(run / "summary.json", lambda s: s.update(throughput_img_s=s["throughput_img_s"] * 2))
    proc = _validate_cli(root)
    assert proc.returncode == 1 and f"{run}/summary.json: throughput_img_s is" in proc.stdout


@pytest.mark.slow
def test_missing_file_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    (run / "curve.csv").unlink()
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert (
        f"{run}/curve.csv: missing (a run folder holds mllog.txt, config.json, curve.csv, "
        "summary.json)" in proc.stdout
    )


@pytest.mark.slow
def test_missing_system_json_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    system_json = next(root.glob("*/system.json"))
    system_json.unlink()
    proc = _validate_cli(root)
    assert proc.returncode == 1 and f"{system_json}: missing" in proc.stdout


@pytest.mark.slow
def test_duplicated_seed_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    seed = json.loads((run / "summary.json").read_text())["seed"]
    twin = run.parent / "20990101-000000-c0ffee"
    shutil.copytree(run, twin)
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert f"{twin}: seed {seed} is also the seed of {run}, a run of the same configuration" in proc.stdout


def test_same_seed_on_another_configuration_is_allowed(tmp_path):
    # e.g. a sweep over networks with one seed: paired runs, not repeated seeds
    def config(network):
        return {
            "config": {"benchmark": "resnet20", "network": network, "seed": 5},
            "resolved": {"system": "s"},
        }

    assert v.experiment_key("a", None, config("1gbe")) != v.experiment_key("b", None, config("wan"))
    same = {
        "config": {"benchmark": "resnet20", "network": "1gbe", "seed": 6, "results_dir": "elsewhere"},
        "resolved": {"system": "s"},
    }
    assert v.experiment_key("a", None, config("1gbe")) == v.experiment_key("c", None, same)


def test_same_seed_in_another_results_tree_is_another_experiment():
    # repeated timing measurements keep one seed per repetition, each in its own tree
    config = {"config": {"benchmark": "resnet20", "seed": 1}, "resolved": {"system": "s"}}
    run = os.path.join("s", "resnet20", "closed", "20990101-000000-aaaaaa")
    key = lambda root: v.experiment_key(os.path.join(os.sep, "t", root, run), None, config)
    assert key("rep-0") != key("rep-1")
    assert key("rep-0") == key("rep-0")


def test_one_data_set_at_two_paths_and_an_unrecorded_default_are_one_experiment():
    """The data by its SHA-256, not its path; a setting a run of an older version does not record
    equals the same setting left unset (None)."""

    def config(data_dir, sha, **more):
        return {
            "config": {"benchmark": "resnet20", "data_dir": data_dir, "seed": 1, **more},
            "data": {"sha256": sha},
            "resolved": {"system": "s"},
        }

    key = lambda c: v.experiment_key("a", None, c)
    assert key(config("../shared/d", "ab12")) == key(config("../../shared/d", "ab12"))
    assert key(config("../shared/d", "ab12")) != key(config("../shared/d", "cd34"))
    assert key(config("d", "ab12")) == key(config("d", "ab12", straggler=None))
    assert key(config("d", "ab12")) != key(config("d", "ab12", straggler="1:2"))


@pytest.mark.slow
def test_changed_recipe_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    _edit_json(run / "config.json", lambda c: c["recipe"].update(weight_decay=5e-4))
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert (
        f"{run}/config.json: closed division: recipe weight_decay is 0.0005, the reference recipe says 0.0001"
    ) in proc.stdout


@pytest.mark.slow
def test_changed_logged_hyperparameter_fails_compliance(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    log = run / "mllog.txt"
    text = log.read_text()
    assert '"key": "opt_weight_decay", "value": 0.0001' in text
    log.write_text(
        text.replace(
            '"key": "opt_weight_decay", "value": 0.0001', '"key": "opt_weight_decay", "value": 0.0005'
        )
    )
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert f"{run}/mllog.txt: compliance: CHECK for 'opt_weight_decay' failed" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("division", ["closed", "open"])
def test_shared_keys_logged_after_run_start_fail_compliance_in_both_divisions(
    subset_tree, tmp_path, division
):
    # A division's rule file must not drop common.yaml's findings for the keys both log.
    log = _run_dirs(subset_tree)[0] / "mllog.txt"
    lines = log.read_text().splitlines()
    key = lambda line: json.loads(line.split(" ", 1)[1])["key"]  # noqa: E731
    late = [ln for ln in lines if key(ln) in ("global_batch_size", "dataset")]
    rest = [ln for ln in lines if key(ln) not in ("global_batch_size", "dataset")]
    i = next(k for k, ln in enumerate(rest) if key(ln) == "run_start")
    edited = rest[: i + 1] + late + rest[i + 1 :]
    edited = [
        ln.replace('"value": "closed"', f'"value": "{division}"') if key(ln) == "submission_division" else ln
        for ln in edited
    ]
    path = tmp_path / "mllog.txt"
    path.write_text("\n".join(edited) + "\n")
    fails, _ = v.compliance_problems(str(path))
    assert any(f.startswith("CHECK for 'global_batch_size' failed") for f in fails), fails
    assert any(f.startswith("CHECK for 'dataset' failed") for f in fails), fails


@pytest.mark.slow
def test_curve_and_log_disagree_fails(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    lines = (run / "curve.csv").read_text().splitlines()
    fields = lines[-1].split(",")
    fields[5] = repr(min(1.0, float(fields[5]) + 0.01))  # a better last accuracy
    lines[-1] = ",".join(fields)
    (run / "curve.csv").write_text("\n".join(lines) + "\n")
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert f"{run}/mllog.txt: evaluation 3: eval_accuracy" in proc.stdout
    assert f"{run}/summary.json: metrics." in proc.stdout  # final/best accuracy no longer match


@pytest.mark.slow
def test_running_status_is_incomplete(subset_tree, copy_of):
    root = copy_of(subset_tree)
    run = _run_dirs(root)[0]
    _edit_json(run / "summary.json", lambda s: s.update(status="running"))
    proc = _validate_cli(root)
    assert proc.returncode == 1 and "incomplete run: status is still 'running'" in proc.stdout


@pytest.mark.slow
def test_synthetic_closed_run_fails(synthetic_tree):
    proc = _validate_cli(synthetic_tree)
    assert proc.returncode == 1
    assert "config.json: closed division: trained on synthetic data" in proc.stdout
    assert "mllog.txt: compliance: CHECK for 'dataset' failed" in proc.stdout


@pytest.mark.slow
def test_open_division_skips_closed_rules(synthetic_tree, copy_of):
    # The same real run, declared open: layout and numbers are checked, the recipe is not.
    root = copy_of(synthetic_tree)
    run = _run_dirs(root)[0]
    open_dir = run.parent.parent / "open"
    open_dir.mkdir()
    run = Path(shutil.move(str(run), str(open_dir / run.name)))
    _edit_json(run / "summary.json", lambda s: s.update(division="open"))
    _edit_json(run / "config.json", lambda c: c["config"].update(division="open"))
    _edit_json(run / "config.json", lambda c: c["recipe"].update(weight_decay=5e-4))
    log = run / "mllog.txt"
    log.write_text(
        log.read_text().replace(
            '"key": "submission_division", "value": "closed"', '"key": "submission_division", "value": "open"'
        )
    )
    # Without the source of the user's code the open run cannot be traced.
    proc = _validate_cli(root)
    assert proc.returncode == 1
    assert "open division: config.json has no 'submission'" in proc.stdout
    source = {
        "ref": "my_opt.py:sgd_wd5e4",
        "kind": "file",
        "path": "my_opt.py",
        "attribute": "sgd_wd5e4",
        "sha256": "ab" * 32,
    }
    _edit_json(
        run / "config.json",
        lambda c: c.update(submission={"model": None, "optimizer": source, "name": "resnet20"}),
    )
    proc = _validate_cli(root)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines() == [f"OK: 1 run under {root} (1 success)"]


@pytest.mark.slow
def test_closed_run_in_open_folder_fails_layout(synthetic_tree, copy_of):
    root = copy_of(synthetic_tree)
    run = _run_dirs(root)[0]
    shutil.move(str(run.parent), str(run.parent.parent / "open"))
    proc = _validate_cli(root)
    assert proc.returncode == 1 and "a closed-division run must be in a folder named closed" in proc.stdout


@pytest.mark.slow
def test_validate_json(subset_tree):
    proc = run_cli("validate", str(subset_tree), "--json", timeout=120)
    res = json.loads(proc.stdout)
    assert res["ok"] is True and res["failures"] == [] and len(res["warnings"]) == 2
    assert res["statuses"] == {"success": 2}


def test_same_compares_integers_beyond_float_range_without_crashing():
    # A hand-edited summary may hold any JSON integer; the comparison must answer, not raise.
    assert v.same(10**400, 10**400)
    assert not v.same(10**400, 3) and not v.same(3.0, 10**400)
    assert v.same(1.0, 1.0 + 1e-15) and not v.same(1.0, 1.0 + 1e-9)
