"""reference_impls.resnet (parameter counts, shapes, errors) and reference_impls.recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttabench.reference_impls import recipe as recipe_mod
from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED, Recipe
from ttabench.reference_impls.resnet import DEPTHS, CifarResNet, resnet


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _v1_by_hand(depth: int) -> int:
    """Option-A ResNet v1 parameters, counted layer by layer."""
    n = (depth - 2) // 6
    stem = 3 * 16 * 9 + 2 * 16  # conv1 + bn1
    stage1 = n * (2 * 16 * 16 * 9 + 2 * 2 * 16)  # n blocks 16->16
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32) + (n - 1) * (2 * 32 * 32 * 9 + 2 * 2 * 32)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 2 * 64) + (n - 1) * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    fc = 64 * 10 + 10
    return stem + stage1 + stage2 + stage3 + fc


EXACT_V1 = {20: 269722, 32: 464154, 44: 658586, 56: 853018}
PAPER_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85}  # He et al. 2015, Table 6


@pytest.mark.parametrize("depth", DEPTHS)
def test_v1_parameter_count(depth):
    count = _count(resnet(depth, 1))
    assert count == EXACT_V1[depth] == _v1_by_hand(depth)
    assert abs(count / 1e6 - PAPER_M[depth]) <= 0.01


@pytest.mark.parametrize("depth", DEPTHS)
def test_v2_parameter_count(depth):
    count = _count(resnet(depth, 2))
    assert abs(count / 1e6 - PAPER_M[depth]) <= 0.01
    # v2 = v1 + the two 1x1 projections (16->32, 32->64); BN parameters balance out
    assert count == EXACT_V1[depth] + 16 * 32 + 32 * 64


def test_depths():
    assert DEPTHS == (20, 32, 44, 56)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("depth", DEPTHS)
def test_output_shape(depth, version):
    torch.manual_seed(0)
    model = resnet(depth, version)
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 10)


@pytest.mark.parametrize("version", [1, 2])
def test_channels_last_model_matches_default_layout(version):
    torch.manual_seed(0)
    model = resnet(20, version).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, cl, atol=1e-4, rtol=1e-4)


def test_v1_has_no_projection_and_v2_has_two():
    def one_by_one(m):
        return [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1)]

    assert one_by_one(resnet(56, 1)) == []
    assert len(one_by_one(resnet(56, 2))) == 2


def test_v1_block_counts():
    model = resnet(32, 1)
    assert len(model.layers) == 3 * 5
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 15  # 31 convs + 1 fc = 32 weighted layers


@pytest.mark.parametrize("depth", [0, 18, 21, 50, 110, -20])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        resnet(depth, 1)


@pytest.mark.parametrize("version", [0, 3, "1"])
def test_bad_version(version):
    with pytest.raises(ValueError, match="version"):
        CifarResNet(20, version)


def test_same_seed_same_weights():
    torch.manual_seed(5)
    a = resnet(20, 1).state_dict()
    torch.manual_seed(5)
    b = resnet(20, 1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bn_init():
    for m in resnet(20, 2).modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


# --- recipe ---------------------------------------------------------------------------


def test_benchmark_table():
    assert BENCHMARKS["resnet20"] == (20, 1)
    assert BENCHMARKS["resnet56-v2"] == (56, 2)
    assert len(BENCHMARKS) == 8


def test_closed_recipe_numbers():
    assert CLOSED.momentum == 0.9 and CLOSED.weight_decay == 1e-4 and CLOSED.nesterov is False
    assert CLOSED.base_lr == 0.1 and CLOSED.base_batch == 128
    assert CLOSED.decay_epochs == (82, 123) and CLOSED.decay_factor == 0.1
    assert CLOSED.epochs == 164 and CLOSED.warmup_epochs == 5.0


def test_peak_lr_linear_scaling():
    assert CLOSED.peak_lr(128) == 0.1
    assert CLOSED.peak_lr(256) == 0.2
    assert CLOSED.peak_lr(1024) == 0.8
    assert CLOSED.peak_lr(64) == 0.05


def test_lr_warmup_at_global_batch_256():
    assert CLOSED.lr_at(0.0, 256) == pytest.approx(0.1, abs=1e-12)
    assert CLOSED.lr_at(2.5, 256) == pytest.approx(0.15, abs=1e-12)
    assert CLOSED.lr_at(1.0, 256) == pytest.approx(0.12, abs=1e-12)
    assert CLOSED.lr_at(5.0, 256) == pytest.approx(0.2, abs=1e-12)
    assert CLOSED.lr_at(4.999999, 256) < 0.2
    assert CLOSED.lr_at(50.0, 256) == pytest.approx(0.2, abs=1e-12)


def test_lr_warmup_at_global_batch_1024():
    # 0.1 -> 0.8 over 5 epochs: 0.1 + 0.7 * 2 / 5 = 0.38 at epoch 2
    assert CLOSED.lr_at(2.0, 1024) == pytest.approx(0.38, abs=1e-12)


def test_no_warmup_at_global_batch_128():
    assert CLOSED.lr_at(0.0, 128) == pytest.approx(0.1, abs=1e-12)
    assert CLOSED.lr_at(2.5, 128) == pytest.approx(0.1, abs=1e-12)


def test_no_warmup_below_128():
    assert CLOSED.lr_at(0.0, 64) == pytest.approx(0.05, abs=1e-12)


def test_lr_step_decay_at_82_and_123():
    assert CLOSED.lr_at(81.999, 128) == pytest.approx(0.1, abs=1e-12)
    assert CLOSED.lr_at(82.0, 128) == pytest.approx(0.01, abs=1e-12)
    assert CLOSED.lr_at(122.999, 128) == pytest.approx(0.01, abs=1e-12)
    assert CLOSED.lr_at(123.0, 128) == pytest.approx(0.001, abs=1e-12)
    assert CLOSED.lr_at(163.9, 128) == pytest.approx(0.001, abs=1e-12)
    assert CLOSED.lr_at(82.0, 512) == pytest.approx(0.04, abs=1e-12)


@pytest.mark.parametrize(
    "batch,workers,ok",
    [
        (32, 1, True),
        (31, 1, False),
        (512, 1, True),
        (513, 1, False),
        (1, 1, False),
        (1000, 1, False),
        (512, 8, True),
        (512, 9, False),
        (128, 32, True),
        (128, 33, False),
        (32, 128, True),
    ],
)
def test_check_batch_bounds(batch, workers, ok):
    broken = CLOSED.check_batch(batch, workers)
    if ok:
        assert broken is None
    else:
        assert isinstance(broken, str) and broken


def test_check_batch_messages():
    assert "31" in CLOSED.check_batch(31, 1) and "32..512" in CLOSED.check_batch(31, 1)
    assert "4608" in CLOSED.check_batch(512, 9) and "4096" in CLOSED.check_batch(512, 9)


def test_recipe_to_dict_is_json_ready():
    import json

    d = CLOSED.to_dict()
    assert d["decay_epochs"] == [82, 123]
    assert json.loads(json.dumps(d)) == d
    assert Recipe(**{**d, "decay_epochs": tuple(d["decay_epochs"])}) == CLOSED


def test_precisions():
    assert recipe_mod.PRECISIONS == ("fp32", "bf16", "fp16")
