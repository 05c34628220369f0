"""The open division: a user's model and optimizer under the harness's data, loop and record.

Broken submissions are real files in tmp_path, loaded through load_submission
and checked as the worker checks them; each failure must produce exactly the
message in the table of the module that raises it (divisions/open_load.py,
open.py, launch/worker/open_checks.py). The examples run for real (`ttabench run`
subprocesses): one process, two workers under torchrun, and Horovod; a user
exception during training on one worker must fail the run promptly; and the
open run's evaluation must equal the closed harness's for the same weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import require_horovod, run_cli

from ttabench import UserError
from ttabench.divisions import open as open_div
from ttabench.divisions import open_load
from ttabench.launch.config import RunConfig
from ttabench.launch.worker import open_checks

ROOT = Path(__file__).resolve().parents[1]
SMALL_CNN = ROOT / "examples" / "small_cnn.py"
ADAM_RESNET = ROOT / "examples" / "adam_resnet.py"
OWN_COMM = ROOT / "examples" / "own_communication.py"
# The runs train on the small synthetic set on disk (conftest's small_data_dir): an evaluation is
# a pass over 200 images, not the 1,000 of --synthetic, and no worker generates the set anew.
# The runs that end in an error before any data is read keep --synthetic.
QUICK = (
    "--max-steps",
    "4",
    "--threads",
    "1",
    "--progress",
    "none",
    "--thresholds",
    "0.1:0.2:0.1",
    "--seed",
    "5",
)

# What a run that fails before reading any data is given.
NO_DATA = ("--synthetic", *QUICK)

# A collective timeout far above any prompt failure, so that "it did not hang" needs no tight bound.
HANG_S = 600

HEADER = """\
import torch
import torch.nn.functional as F
from torch import nn
from ttabench.divisions.open import Submission


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


def sgd(model, run):
    return torch.optim.SGD(model.parameters(), lr=0.1)
"""


def _write(tmp_path: Path, body: str, name: str = "sub.py") -> Path:
    f = tmp_path / name
    f.write_text(HEADER + textwrap.dedent(body))
    return f


def _run_info() -> open_div.RunInfo:
    return open_div.RunInfo(
        batch_size=32, world_size=1, global_batch=32, train_size=5000, steps_per_epoch=156, epochs=1.0
    )


def _check(model_ref: str | None, optimizer_ref: str | None = None):
    """The checks build() runs, in its order: load, model, probe, optimizer."""
    loaded = open_div.load_submission(model_ref, optimizer_ref)
    model = open_checks.make_model(loaded) if loaded.submission.model is not None else None
    if model is not None:
        open_checks.check_forward(loaded, model, torch.device("cpu"), channels_last=True, autocast_dtype=None)
    if loaded.optimizer is not None:
        if model is None:
            from ttabench.reference_impls.resnet import resnet

            model = resnet(20, 1)
        open_checks.make_optimizer(loaded, model, _run_info())
    return loaded


def _message(model_ref, optimizer_ref=None) -> str:
    with pytest.raises(UserError) as info:
        _check(model_ref, optimizer_ref)
    return str(info.value)


# --- every broken-model case, with its exact message --------------------------------------

# (name, body of the user's file, attribute, expected message with {ref} for the reference)
MODEL_CASES = [
    ("attribute missing", "", "net", "--model {ref}: {file} has no attribute 'net'; it has: Net, sgd"),
    (
        "not callable",
        "net = 3\n",
        "net",
        "--model {ref}: an int is not callable (expected a function returning a torch.nn.Module, "
        "or a Submission)",
    ),
    (
        "raises when called",
        "def net():\n    raise ValueError('width must be even')\n",
        "net",
        "--model {ref}: calling it raised ValueError: width must be even",
    ),
    ("returns None", "def net():\n    pass\n", "net", "--model {ref}: returned None, not a torch.nn.Module"),
    (
        "returns a tensor",
        "def net():\n    return torch.zeros(3)\n",
        "net",
        "--model {ref}: returned a Tensor, not a torch.nn.Module",
    ),
    (
        "no parameters",
        "def net():\n    return nn.Flatten()\n",
        "net",
        "--model {ref}: the model has no parameters",
    ),
    (
        "no trainable parameters",
        "def net():\n    return Net().requires_grad_(False)\n",
        "net",
        "--model {ref}: the model has no trainable parameters (every one has requires_grad=False)",
    ),
    (
        "wrong output shape",
        "def net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 5))\n",
        "net",
        "--model {ref}: output of shape 2x5 on a probe batch of 2x3x32x32, expected 2x10 (N x 10 logits)",
    ),
    (
        "per-image output",
        "def net():\n    return nn.Sequential(nn.Flatten(0), nn.Linear(6144, 10))\n",
        "net",
        "--model {ref}: output of shape 10 on a probe batch of 2x3x32x32, expected 2x10 (N x 10 logits)",
    ),
    (
        "forward raises",
        """\
        class Broken(Net):
            def forward(self, x):
                raise RuntimeError('forgot to flatten')

        net = Broken
        """,
        "net",
        "--model {ref}: the forward pass on a probe batch of 2x3x32x32 raised RuntimeError: "
        "forgot to flatten",
    ),
    (
        "output not a tensor",
        """\
        class Pair(Net):
            def forward(self, x):
                return super().forward(x), x

        net = Pair
        """,
        "net",
        "--model {ref}: the forward pass returned a tuple, expected a tensor of 2x10 logits",
    ),
    (
        "non-finite output",
        """\
        class Nan(Net):
            def forward(self, x):
                return super().forward(x) * float('nan')

        net = Nan
        """,
        "net",
        "--model {ref}: non-finite output (nan or inf) on a probe batch of 2x3x32x32",
    ),
    (
        "Submission.model not a factory",
        "net = Submission(model='Net')\n",
        "net",
        "--model {ref}: Submission.model is a str, not callable",
    ),
    (
        "Submission.train_step not callable",
        "net = Submission(model=Net, train_step='ce')\n",
        "net",
        "--model {ref}: Submission.train_step is a str, not callable",
    ),
    (
        "Submission.optimizer not callable",
        "net = Submission(model=Net, optimizer=0.1)\n",
        "net",
        "--model {ref}: Submission.optimizer is a float, not callable",
    ),
    (
        "Submission.batch_size zero",
        "net = Submission(model=Net, batch_size=0)\n",
        "net",
        "--model {ref}: Submission.batch_size must be a positive int or None, got 0",
    ),
    (
        "Submission.batch_size float",
        "net = Submission(model=Net, batch_size=64.0)\n",
        "net",
        "--model {ref}: Submission.batch_size must be a positive int or None, got 64.0",
    ),
    (
        "Submission.comm_hook not callable",
        "net = Submission(model=Net, comm_hook='fp16')\n",
        "net",
        "--model {ref}: Submission.comm_hook is a str, not callable",
    ),
    (
        "Submission.comm_hook with the wrong signature",
        """\
        def hook(bucket):
            return bucket.buffer()

        net = Submission(model=Net, comm_hook=hook)
        """,
        "net",
        "--model {ref}: Submission.comm_hook must take (state, bucket) as a DDP communication hook "
        "does, not (bucket)",
    ),
    (
        "Submission.sync_step with the wrong signature",
        """\
        def sync(model, step, group):
            pass

        net = Submission(model=Net, sync_step=sync)
        """,
        "net",
        "--model {ref}: Submission.sync_step must take (model, step), not (model, step, group)",
    ),
    (
        "Submission.augment",
        "net = Submission(model=Net, augment='autoaugment')\n",
        "net",
        "--model {ref}: Submission.augment must be 'pad4-crop32-hflip' or 'none', got 'autoaugment'",
    ),
    (
        "Submission.optimizer raises",
        """\
        def bad(model, run):
            raise KeyError('lr')

        net = Submission(model=Net, optimizer=bad)
        """,
        "net",
        "Submission.optimizer of --model {ref}: calling it raised KeyError: 'lr'",
    ),
]


@pytest.mark.parametrize("name,body,attr,expected", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_broken_model_message(tmp_path, name, body, attr, expected):
    f = _write(tmp_path, body)
    ref = f"{f}:{attr}"
    assert _message(ref) == expected.format(ref=ref, file=f)


COMMUNICATION_MESSAGES = [
    "--algorithm topk conflicts with Submission.comm_hook of --model REF (the submission's own "
    "communication); leave --algorithm out",
    "--model REF: Submission.sync_step runs under torchrun (a DDP communication hook or step); not "
    "under --backend horovod",
]


def test_own_communication_needs_the_default_algorithm_and_torchrun():
    loaded = open_div.load_submission(f"{OWN_COMM}:local_sgd", None)
    loaded.check_communication("allreduce", "torchrun")  # accepted
    loaded.model_ref = "REF"
    with pytest.raises(UserError) as info:
        loaded.check_communication("topk", "torchrun")
    assert str(info.value) == COMMUNICATION_MESSAGES[0]
    loaded.submission = open_div.Submission(model=None, sync_step=lambda model, step: None)
    with pytest.raises(UserError) as info:
        loaded.check_communication("allreduce", "horovod")
    assert str(info.value) == COMMUNICATION_MESSAGES[1]
    # without its own communication, a submission runs with any --algorithm
    open_div.load_submission(f"{SMALL_CNN}:small_cnn", None).check_communication("topk", "horovod")


def test_attribute_missing_in_a_file_without_callables(tmp_path):
    f = tmp_path / "consts.py"
    f.write_text("WIDTH = 16\n")
    ref = f"{f}:net"
    assert _message(ref) == f"--model {ref}: {f} has no attribute 'net'; it defines no callable"


OPTIMIZER_CASES = [
    (
        "not callable",
        "opt = [1, 2]\n",
        "--optimizer {ref}: a list is not callable (expected a function (model, run) -> optimizer)",
    ),
    (
        "raises",
        "def opt(model, run):\n    raise TypeError('needs a learning rate')\n",
        "--optimizer {ref}: calling it raised TypeError: needs a learning rate",
    ),
    (
        "returns parameters",
        "def opt(model, run):\n    return list(model.parameters())\n",
        "--optimizer {ref}: returned a list, expected a torch.optim.Optimizer or (optimizer, lr_at)",
    ),
    (
        "returns None",
        "def opt(model, run):\n    pass\n",
        "--optimizer {ref}: returned None, expected a torch.optim.Optimizer or (optimizer, lr_at)",
    ),
    (
        "lr_at not callable",
        "def opt(model, run):\n    return sgd(model, run), 0.1\n",
        "--optimizer {ref}: lr_at is a float, expected a function epoch -> lr, or None",
    ),
    (
        "lr_at raises",
        "def opt(model, run):\n    return sgd(model, run), lambda e: 1 / 0\n",
        "--optimizer {ref}: lr_at(0.0) raised ZeroDivisionError: division by zero",
    ),
    (
        "lr_at nan",
        "def opt(model, run):\n    return sgd(model, run), lambda e: float('nan')\n",
        "--optimizer {ref}: lr_at(0.0) returned nan, expected a finite number >= 0",
    ),
    (
        "lr_at negative",
        "def opt(model, run):\n    return sgd(model, run), lambda e: -0.1\n",
        "--optimizer {ref}: lr_at(0.0) returned -0.1, expected a finite number >= 0",
    ),
    (
        "lr_at string",
        "def opt(model, run):\n    return sgd(model, run), lambda e: '0.1'\n",
        "--optimizer {ref}: lr_at(0.0) returned '0.1', expected a finite number >= 0",
    ),
    (
        "misses parameters",
        """\
        def opt(model, run):
            return torch.optim.SGD(model.fc.parameters(), lr=0.1)
        """,
        "--optimizer {ref}: the optimizer misses 2 of the model's 4 trainable parameters "
        "(first: conv.weight)",
    ),
    (
        "foreign tensors",
        """\
        def opt(model, run):
            extra = torch.zeros(3, requires_grad=True)
            return torch.optim.SGD([*model.parameters(), extra], lr=0.1)
        """,
        "--optimizer {ref}: the optimizer holds 1 tensors that are not the model's parameters",
    ),
]


@pytest.mark.parametrize("name,body,expected", OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_broken_optimizer_message(tmp_path, name, body, expected):
    f = _write(tmp_path, textwrap.dedent(body) + "\n\ndef net():\n    return Net()\n")
    ref = f"{f}:opt"
    assert _message(f"{f}:net", ref) == expected.format(ref=ref)


def test_optimizer_alone_is_checked_against_the_closed_model(tmp_path):
    f = _write(tmp_path, "def opt(model, run):\n    return torch.optim.SGD(model.fc.parameters(), lr=1)\n")
    ref = f"{f}:opt"
    assert _message(None, ref) == (
        f"--optimizer {ref}: the optimizer misses 57 of the model's "
        "59 trainable parameters (first: conv1.weight)"
    )


def test_file_not_found(tmp_path):
    ref = "no/such/dir/model.py:net"
    assert _message(ref) == f"--model {ref}: file not found: {os.path.abspath('no/such/dir/model.py')}"


def test_module_not_found():
    ref = "no_such_module_for_ttabench:net"
    assert _message(ref) == (
        f"--model {ref}: no module named 'no_such_module_for_ttabench' (run from "
        "its folder, add it to PYTHONPATH, or give path/to/file.py:CALLABLE)"
    )


def test_syntax_error(tmp_path):
    f = tmp_path / "sub.py"
    f.write_text("import torch\n\nx = = 1\n")
    ref = f"{f}:net"
    assert _message(ref) == f"--model {ref}: syntax error in {f}, line 3: invalid syntax"


def test_import_raises(tmp_path):
    f = tmp_path / "sub.py"
    f.write_text("raise RuntimeError('needs a GPU')\n")
    ref = f"{f}:net"
    assert _message(ref) == f"--model {ref}: importing {f} raised RuntimeError: needs a GPU"


def test_import_of_a_missing_dependency_is_not_module_not_found(tmp_path, monkeypatch):
    (tmp_path / "user_nets_for_ttabench.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = "user_nets_for_ttabench:net"
    assert _message(ref) == (
        f"--model {ref}: importing user_nets_for_ttabench raised "
        "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )


def test_batch_size_conflict(tmp_path):
    f = _write(tmp_path, "net = Submission(model=Net, batch_size=64)\n")
    ref = f"{f}:net"
    loaded = open_div.load_submission(ref, None)
    assert loaded.batch_size(128, 128) == 64  # --batch-size left out
    assert loaded.batch_size(64, 128) == 64
    with pytest.raises(UserError) as info:
        loaded.batch_size(32, 128)
    assert str(info.value) == (
        f"--batch-size 32 conflicts with Submission.batch_size 64 of --model {ref}; leave --batch-size out"
    )


@pytest.mark.parametrize(
    "cfg,expected",
    [
        (dict(model="x.py:net"), "--model needs --division open"),
        (dict(optimizer="x.py:opt"), "--optimizer needs --division open"),
        (
            dict(division="open"),
            "--division open needs --model MODULE:CALLABLE or path/to/file.py:CALLABLE, "
            "or --optimizer with the closed model of --benchmark",
        ),
        (
            dict(division="open", model="small_cnn.py"),
            "--model must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got 'small_cnn.py'",
        ),
        (
            dict(division="open", optimizer="my-opts:adam"),
            "--optimizer must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got 'my-opts:adam'",
        ),
    ],
)
def test_flag_combinations(cfg, expected):
    with pytest.raises(UserError) as info:
        RunConfig(synthetic=True, **cfg).validate()
    assert str(info.value) == expected


def test_open_run_without_closed_batch_rules():
    RunConfig(synthetic=True, division="open", model="x.py:net", batch_size=8).validate()
    with pytest.raises(UserError):
        RunConfig(synthetic=True, batch_size=8).validate()


def test_results_name():
    assert RunConfig(division="open", model="examples/small_cnn.py:small_cnn").benchmark_name() == "small_cnn"
    assert RunConfig(division="open", model="pkg.nets:build").benchmark_name() == "build"
    assert (
        RunConfig(division="open", benchmark="resnet32", optimizer="a.py:adam").benchmark_name() == "resnet32"
    )
    assert RunConfig(benchmark="resnet56-v2").benchmark_name() == "resnet56-v2"


def test_user_traceback_is_kept(tmp_path):
    f = _write(tmp_path, "def net():\n    raise ValueError('width must be even')\n")
    with pytest.raises(UserError) as info:
        _check(f"{f}:net")
    tb = info.value.user_traceback
    assert "raise ValueError('width must be even')" in tb and str(f) in tb
    assert isinstance(info.value.__cause__, ValueError)


def test_messages_follow_the_docstring_table():
    """Every message asserted above fits a row of the tables, and every row is asserted."""
    rows = []
    for module in (open_load, open_div, open_checks):
        found = re.findall(r"^\| [^|]+\| ``([^|]+)`` +\|$", module.__doc__, flags=re.M)
        assert found, module.__name__
        rows += found
    assert len(rows) >= 25, rows

    def pattern(template: str) -> re.Pattern:
        parts = re.split(r"\b[A-Z][A-Z_]*\b", template)
        return re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$")

    patterns = [pattern(r) for r in rows]
    ref = "d/sub.py:net"
    messages = [c[3].format(ref=ref, file="d/sub.py") for c in MODEL_CASES]
    messages += [c[2].format(ref=ref) for c in OPTIMIZER_CASES]
    messages += [
        "--model REF: file not found: /abs/path.py",
        "--model REF: f.py has no attribute 'net'; it defines no callable",
        "--model m:net: no module named 'm' (run from its folder, add it to PYTHONPATH, or give "
        "path/to/file.py:CALLABLE)",
        "--model REF: syntax error in f.py, line 3: invalid syntax",
        "--model REF: importing f.py raised RuntimeError: needs a GPU",
        "--batch-size 32 conflicts with Submission.batch_size 64 of --model REF; leave --batch-size out",
        "--model must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got 'small_cnn.py'",
        *COMMUNICATION_MESSAGES,
    ]
    unused = set(range(len(patterns)))
    for m in messages:
        hits = [i for i, p in enumerate(patterns) if p.match(m)]
        assert hits, f"not in the table: {m}"
        unused -= set(hits)
    assert not unused, [rows[i] for i in sorted(unused)]


def test_module_reference_records_its_source(tmp_path, monkeypatch):
    f = tmp_path / "user_nets_ok_for_ttabench.py"
    f.write_text(HEADER + "\ndef net():\n    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = _check("user_nets_ok_for_ttabench:net", f"{SMALL_CNN}:sgd_one_cycle")
    rec = loaded.record(name="net")
    assert rec["model"] == {
        "ref": "user_nets_ok_for_ttabench:net",
        "kind": "module",
        "module": "user_nets_ok_for_ttabench",
        "path": str(f),
        "attribute": "net",
        "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
    }
    assert rec["optimizer"]["kind"] == "file" and rec["optimizer"]["path"] == str(SMALL_CNN)
    assert rec["hooks"]["optimizer"] == "--optimizer"


def test_examples_pass_the_checks():
    for ref in (
        f"{SMALL_CNN}:small_cnn",
        f"{SMALL_CNN}:small_cnn_tuned",
        f"{OWN_COMM}:fp16_allreduce",
        f"{OWN_COMM}:local_sgd",
    ):
        _check(ref)
    _check(None, f"{ADAM_RESNET}:adamw_cosine")


def test_launcher_pre_check_reads_no_data(tmp_path):
    """The launcher's pre-check runs the worker's checks on the user's code alone: a data folder
    whose batch files are not pickles does not stop it, a broken model still does."""
    from ttabench.launch.launcher import check_open_submission
    from ttabench.reference_impls import cifar10

    data = tmp_path / "data"
    data.mkdir()
    for name in cifar10.TRAIN_FILES + (cifar10.TEST_FILE,):
        (data / name).write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-10 batch file"):
        cifar10.load(str(data))  # what the workers would read
    ok = dict(division="open", data_dir=str(data), workers=2)
    check_open_submission(RunConfig(model=f"{SMALL_CNN}:small_cnn_tuned", **ok))
    check_open_submission(RunConfig(optimizer=f"{ADAM_RESNET}:adamw_cosine", **ok))
    f = _write(tmp_path, "def net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 5))\n")
    ref = f"{f}:net"
    with pytest.raises(UserError) as info:
        check_open_submission(RunConfig(model=ref, **ok))
    assert str(info.value) == (
        f"--model {ref}: output of shape 2x5 on a probe batch of 2x3x32x32, expected 2x10 (N x 10 logits)"
    )


def test_divisions_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; import ttabench.divisions.open, ttabench.divisions.open_load, ttabench.divisions.metrics; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# --- the CLI: one line, exit code 2, no traceback (unless --debug) ------------------------


@pytest.mark.slow
def test_cli_broken_model_is_one_line(tmp_path):
    f = _write(tmp_path, "def net():\n    raise ValueError('width must be even')\n")
    ref = f"{f}:net"
    args = ("run", "--division", "open", "--model", ref, *NO_DATA, "--results-dir", str(tmp_path / "r"))
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"ttabench: error: --model {ref}: calling it raised ValueError: width must be even"
    ]
    # Checked before any folder exists, as for N workers: nothing is left behind.
    assert list((tmp_path / "r").glob("*/*/*/*")) == []

    debug = run_cli("--debug", *args, timeout=300)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "raise ValueError('width must be even')" in debug.stderr
    assert debug.stderr.splitlines()[-1] == proc.stderr.splitlines()[0]


@pytest.mark.slow
def test_cli_broken_model_with_two_workers_fails_before_any_worker(tmp_path):
    f = _write(tmp_path, "def net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 5))\n")
    ref = f"{f}:net"
    proc = run_cli(
        "run",
        "--division",
        "open",
        "--model",
        ref,
        "--workers",
        "2",
        *NO_DATA,
        "--results-dir",
        str(tmp_path / "r"),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"ttabench: error: --model {ref}: output of shape 2x5 on a "
        "probe batch of 2x3x32x32, expected 2x10 (N x 10 logits)"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_model_needs_open_division(tmp_path):
    proc = run_cli(
        "run",
        "--model",
        f"{SMALL_CNN}:small_cnn",
        *NO_DATA,
        "--results-dir",
        str(tmp_path / "r"),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["ttabench: error: --model needs --division open"]


# --- the examples, for real --------------------------------------------------------------


def _run(tmp_path: Path, data_dir: str, *args: str, timeout: float = 300) -> Path:
    root = tmp_path / "results"
    proc = run_cli(
        "run", "--division", "open", "--data-dir", data_dir, *args, *QUICK, "--results-dir", str(root),
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    (run_dir,) = [p for p in root.glob("*/*/*/*") if p.is_dir()]
    return run_dir


def _assert_open_run(run_dir: Path, name: str, example: Path, workers: int = 1) -> dict:
    assert run_dir.parent.name == "open" and run_dir.parent.parent.name == name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "success", summary
    assert summary["division"] == "open" and summary["benchmark"] == name
    assert summary["world_size"] == workers and summary["steps"] == 4
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["division"] == "open"
    sub = config["submission"]
    assert sub["name"] == name
    src = sub["model"] or sub["optimizer"]
    assert src["kind"] == "file" and src["path"] == str(example)
    assert src["sha256"] == hashlib.sha256(example.read_bytes()).hexdigest()
    events = [
        json.loads(line[len(":::MLLOG ") :]) for line in (run_dir / "mllog.txt").read_text().splitlines()
    ]
    by_key = {e["key"]: e["value"] for e in events}
    assert by_key["submission_division"] == "open" and by_key["submission_benchmark"] == name
    assert len((run_dir / "curve.csv").read_text().splitlines()) == 2  # header + the final eval
    # ... and the validator accepts it as an open-division submission.
    proc = run_cli("validate", str(run_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK: 1 run")
    return config


@pytest.mark.slow
def test_small_cnn_one_process(tmp_path, small_data_dir):
    run_dir = _run(tmp_path, small_data_dir, "--model", f"{SMALL_CNN}:small_cnn", "--batch-size", "32")
    config = _assert_open_run(run_dir, "small_cnn", SMALL_CNN)
    assert config["model"]["class"] == "SmallCNN" and config["model"]["parameters"] == 391466
    assert config["submission"]["hooks"] == {
        "model": "submission",
        "optimizer": "closed recipe",
        "batch_size": "--batch-size",
        "train_step": "cross_entropy",
        "augment": "pad4-crop32-hflip",
        "comm_hook": "--algorithm",
        "sync_step": None,
    }
    assert config["recipe"]["momentum"] == 0.9 and config["resolved"]["global_batch"] == 32


@pytest.mark.slow
def test_small_cnn_tuned_uses_every_hook(tmp_path, small_data_dir):
    run_dir = _run(tmp_path, small_data_dir, "--model", f"{SMALL_CNN}:small_cnn_tuned")
    config = _assert_open_run(run_dir, "small_cnn_tuned", SMALL_CNN)
    assert config["submission"]["hooks"] == {
        "model": "submission",
        "optimizer": "submission",
        "batch_size": "submission",
        "train_step": "submission",
        "augment": "none",
        "comm_hook": "--algorithm",
        "sync_step": None,
    }
    assert config["resolved"]["batch_size"] == 64 and config["resolved"]["global_batch"] == 64
    assert config["recipe"]["optimizer"] == "SGD" and config["recipe"]["param_groups"][0]["nesterov"]
    assert config["recipe"]["augmentation"] == "none"
    assert config["recipe"]["loss"] == "submission train_step"
    # one-cycle over the 4 planned steps: it starts at peak/10
    assert config["resolved"]["initial_lr"] == pytest.approx(0.1 * 0.2 * 64 / 128)


# One run of the AdamW example, checked twice: as an open ResNet-20, and by the closed harness's
# evaluation. One test rather than two sharing a module fixture: under xdist two tests may land on
# two workers, and each would train the run.
@pytest.mark.slow
def test_adam_resnet_is_open_resnet20_and_evaluates_as_the_closed_harness(tmp_path, small_data_dir):
    run_dir = _run(
        tmp_path, small_data_dir, "--optimizer", f"{ADAM_RESNET}:adamw_cosine", "--batch-size", "32",
        "--save-model",
    )  # fmt: skip
    config = _assert_open_run(run_dir, "resnet20", ADAM_RESNET)
    assert config["submission"]["model"] is None
    assert config["model"]["name"] == "resnet20" and config["model"]["depth"] == 20
    assert config["recipe"]["optimizer"] == "AdamW"
    assert [g["weight_decay"] for g in config["recipe"]["param_groups"]] == [0.05, 0.0]
    events = [
        json.loads(line[len(":::MLLOG ") :]) for line in (run_dir / "mllog.txt").read_text().splitlines()
    ]
    assert {e["key"]: e["value"] for e in events}["opt_name"] == "adamw"
    _assert_open_evaluation_equals_the_closed_harness(run_dir, small_data_dir)


def _assert_open_evaluation_equals_the_closed_harness(run_dir: Path, small_data_dir: str) -> None:
    """The weights the open run saved, evaluated by the closed harness's evaluate() on the
    same data, give exactly the accuracy and loss of the run's last curve row."""
    from ttabench.divisions.results import read_curve
    from ttabench.launch.worker import comm, compute
    from ttabench.reference_impls import cifar10
    from ttabench.reference_impls.augment import Normalize
    from ttabench.reference_impls.resnet import resnet

    config = json.loads((run_dir / "config.json").read_text())
    channels_last = config["resolved"]["channels_last"]
    model = resnet(20, 1)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    data = cifar10.load(small_data_dir)  # the data the run evaluated on
    threads = torch.get_num_threads()
    torch.set_num_threads(config["resolved"]["threads"])  # oneDNN sums in a per-thread-count order
    try:
        acc, loss, count = compute.evaluate(
            model,
            data.test_images,
            data.test_labels,
            Normalize(cifar10.MEAN, cifar10.STD, channels_last=channels_last),
            comm.Comm(),
            batch_size=1000,
        )
    finally:
        torch.set_num_threads(threads)
    last = read_curve(str(run_dir))[-1]
    assert count == len(data.test_labels)
    assert (acc, loss) == (last["accuracy"], last["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("example", ["small_cnn", "adam_resnet"])
def test_examples_two_workers_torchrun(tmp_path, example, small_data_dir):
    if example == "small_cnn":
        run_dir = _run(
            tmp_path,
            small_data_dir,
            "--model",
            f"{SMALL_CNN}:small_cnn",
            "--batch-size",
            "16",
            "--workers",
            "2",
        )
        config = _assert_open_run(run_dir, "small_cnn", SMALL_CNN, workers=2)
    else:
        run_dir = _run(
            tmp_path,
            small_data_dir,
            "--optimizer",
            f"{ADAM_RESNET}:adamw_cosine",
            "--batch-size",
            "16",
            "--workers",
            "2",
        )
        config = _assert_open_run(run_dir, "resnet20", ADAM_RESNET, workers=2)
    assert config["resolved"]["backend"] == "torchrun" and config["resolved"]["global_batch"] == 32


@pytest.mark.slow
@pytest.mark.parametrize("example, fraction", [("fp16_allreduce", 1 / 2), ("local_sgd", 1 / 4)])
def test_own_communication_two_workers_counts_its_bytes(tmp_path, example, fraction, small_data_dir):
    """A submission's own hook and sync step train at 2 workers; the bytes they hand to
    torch.distributed are counted like the references': with S the model's fp32 bytes, the
    fp16 hook sends S/2 per worker per step (an all-reduce of S/2 at N = 2), local SGD one
    all-reduce of S every 4 steps, S/4 per step."""
    run_dir = _run(
        tmp_path, small_data_dir, "--model", f"{OWN_COMM}:{example}", "--batch-size", "16", "--workers", "2"
    )
    config = _assert_open_run(run_dir, example, OWN_COMM, workers=2)
    hooks = config["submission"]["hooks"]
    assert hooks["comm_hook"] == "submission"
    assert hooks["sync_step"] == ("submission" if example == "local_sgd" else None)
    summary = json.loads((run_dir / "summary.json").read_text())
    model_bytes = 4 * config["model"]["parameters"]
    assert summary["comm_bytes_model"]["model_bytes"] == model_bytes
    assert summary["comm_bytes_formula"] is None  # no formula for the user's own pattern
    assert summary["comm_bytes_per_step"] == pytest.approx(fraction * model_bytes, rel=1e-12)
    per_rank = [b["comm_bytes"] for b in summary["time_breakdown"]["per_rank"]]
    assert [c["source"] for c in per_rank] == ["submission", "submission"]
    handed = {"fp16_allreduce": 4 * model_bytes / 2, "local_sgd": model_bytes}[example]
    assert all(c["handed"] == {"all_reduce": handed, "all_gather": 0, "send": 0} for c in per_rank)


@pytest.mark.slow
@pytest.mark.horovod
def test_small_cnn_tuned_horovod(tmp_path, small_data_dir):
    require_horovod()
    run_dir = _run(
        tmp_path, small_data_dir, "--model", f"{SMALL_CNN}:small_cnn_tuned", "--workers", "2",
        "--backend", "horovod",
    )  # fmt: skip
    config = _assert_open_run(run_dir, "small_cnn_tuned", SMALL_CNN, workers=2)
    assert config["resolved"]["backend"] == "horovod" and config["resolved"]["global_batch"] == 128


# --- a user exception during training ends the run as failed, promptly ---------------------


@pytest.mark.slow
def test_exception_in_train_step_on_one_worker_fails_the_run(tmp_path, small_data_dir):
    f = _write(
        tmp_path,
        """\
        steps = 0


        def step(model, x, y):
            global steps
            steps += 1
            if steps == 3 and torch.distributed.get_rank() == 1:
                raise RuntimeError('user bug on rank 1 at step 3')
            return F.cross_entropy(model(x), y)


        flaky = Submission(model=Net, train_step=step)
        """,
    )
    root = tmp_path / "results"
    t0 = time.monotonic()
    proc = run_cli(
        "run",
        "--division",
        "open",
        "--model",
        f"{f}:flaky",
        "--workers",
        "2",
        "--batch-size",
        "16",
        "--data-dir",
        small_data_dir,
        "--max-steps",
        "8",
        "--threads",
        "1",
        "--progress",
        "none",
        "--collective-timeout",
        str(HANG_S),
        "--results-dir",
        str(root),
        timeout=2 * HANG_S,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert "user bug on rank 1 at step 3" in proc.stderr
    (run_dir,) = root.glob("*/flaky/open/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    # Rank 0 records the failure it sees: the collective that rank 1's exit broke.
    assert summary["status"] == "failed", summary
    # Not a hang: one would wait out the collective timeout (HANG_S). A prompt failure is start-up
    # and rendezvous, seconds (under 60 s on a loaded 2-core machine), so half of HANG_S tells
    # the two apart whatever the load.
    assert elapsed < HANG_S / 2, elapsed
