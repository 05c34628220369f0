"""launch.warmup: compile/warm-up on random input leaves no trace, and fast modes stay correct.

- After the warm-up the model's state_dict is bit-identical to before, the
  gradients are None, the optimizer has no state, the global RNG is where it
  was; training after a warm-up gives the same parameters, to the last bit,
  as training without one (one process, and DDP on a real gloo group).
- The issue's requirement: bf16 autocast and torch.compile'd training steps
  give finite losses close to fp32 eager on a fixed batch of real-format
  images (bf16: relative 5e-2 on the loss), and the compiled model does not
  recompile once warm-up is over.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gloo_group import on_gloo

from ttabench.launch.worker import warmup
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.augment import Normalize
from ttabench.reference_impls.recipe import CLOSED
from ttabench.reference_impls.resnet import resnet

B = 16  # small batches keep the tests quick; the shapes are what matter


def _model_and_optimizer(seed: int = 0, channels_last: bool = True):
    """ResNet-20 cut to its first block of each stage (ResNet-8: every kind of layer and shortcut
    it has, a third of the graph to compile), and the recipe's SGD."""
    torch.manual_seed(seed)
    model = resnet(20)
    model.layers = model.layers[::3]  # blocks 0, 3, 6: 16, 32 (stride 2), 64 (stride 2) filters
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=CLOSED.base_lr, momentum=CLOSED.momentum, weight_decay=CLOSED.weight_decay
    )
    return model, opt


def _fixed_batches(steps: int, n: int = B, channels_last: bool = True):
    """Real-format images (the synthetic CIFAR-10 stand-in), normalised as the loop does."""
    data = cifar10.synthetic(train_size=steps * n, test_size=10, seed=3)
    norm = Normalize(cifar10.MEAN, cifar10.STD, channels_last=channels_last)
    x = norm(data.train_images)
    return [(x[i * n : (i + 1) * n], data.train_labels[i * n : (i + 1) * n]) for i in range(steps)]


def _train(model, opt, batches, autocast_dtype=None):
    losses = []
    model.train()
    for x, y in batches:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _assert_same_state(before: dict, after: dict):
    assert before.keys() == after.keys()
    for k in before:
        assert before[k].dtype == after[k].dtype, k
        assert torch.equal(before[k], after[k]), f"{k} changed"


# --- eval_batch_sizes: worked out by hand -------------------------------------------


@pytest.mark.parametrize(
    "n, world, rank, eb, expected",
    [
        (1017, 1, 0, 1000, [1000, 17]),  # the real subset's test split
        (1017, 2, 0, 1000, [509]),  # rank 0: images 0, 2, ..., 1016
        (1017, 2, 1, 1000, [508]),
        (2000, 1, 0, 1000, [1000]),  # no tail
        (10000, 3, 0, 1000, [1000, 334]),  # 3334 images: 3 full chunks and 334
        (10000, 3, 2, 1000, [1000, 333]),
        (5, 8, 6, 1000, []),  # more workers than test images: nothing to evaluate
    ],
)
def test_eval_batch_sizes(n, world, rank, eb, expected):
    assert warmup.eval_batch_sizes(n, world, rank, eb) == expected


# --- leaves no trace --------------------------------------------------------------------


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_eager_warmup_restores_state_exactly(autocast_dtype):
    model, opt = _model_and_optimizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    forwards = []
    model.register_forward_hook(lambda m, i, o: forwards.append((m.training, len(i[0]))))
    train_model, eval_model, seconds = warmup.prepare(
        model,
        model,
        device="cpu",
        train_batch=B,
        eval_batches=[40, 7],
        autocast_dtype=autocast_dtype,
        compile_mode="none",
        channels_last=True,
    )
    # it really ran: two training forwards of the train batch, one eval forward per shape
    assert forwards == [(True, B), (True, B), (False, 40), (False, 7)]
    assert train_model is model and eval_model is model and seconds > 0
    _assert_same_state(before, model.state_dict())
    assert int(model.state_dict()["bn1.num_batches_tracked"]) == 0
    assert all(p.grad is None for p in model.parameters())
    assert opt.state_dict()["state"] == {}
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training


def test_training_after_warmup_is_bit_identical_to_training_without():
    batches = _fixed_batches(3)
    ref_model, ref_opt = _model_and_optimizer()
    ref_losses = _train(ref_model, ref_opt, batches)
    model, opt = _model_and_optimizer()
    model.eval()  # the warm-up restores whatever mode it found
    warmup.prepare(
        model, model, device="cpu", train_batch=B, eval_batches=[B], compile_mode="none", channels_last=True
    )
    assert not model.training
    losses = _train(model, opt, batches)
    assert losses == ref_losses
    _assert_same_state(ref_model.state_dict(), model.state_dict())


def test_warmup_returns_a_tuple_like_result():
    model, _ = _model_and_optimizer(channels_last=False)
    out = warmup.prepare(model, model, device="cpu", train_batch=4, compile_mode="none", train_steps=1)
    train_model, eval_model, seconds = out
    assert (train_model, eval_model, seconds) == (out.train_model, out.eval_model, out.warmup_s)


def test_non_finite_warmup_loss_fails_and_still_restores():
    model, _ = _model_and_optimizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def nan_step(m, x, y):
        return F.cross_entropy(m(x), y) * float("nan")

    with pytest.raises(RuntimeError, match="non-finite"):
        warmup.prepare(
            model,
            model,
            device="cpu",
            train_batch=4,
            compile_mode="none",
            train_step=nan_step,
            channels_last=True,
        )
    _assert_same_state(before, model.state_dict())
    assert all(p.grad is None for p in model.parameters())


# --- DDP on a real gloo group: warm-up then training == training alone -----------------


def _ddp_trained(rank: int, world: int) -> dict:
    """The parameters after two DDP steps, trained plain and after a warm-up (each from the same
    initial model): {"plain": state_dict, "warmed": state_dict}."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    states = {}
    for name in ("plain", "warmed"):
        model, opt = _model_and_optimizer()
        ddp = DDP(model, broadcast_buffers=False)
        if name == "warmed":
            warmup.prepare(
                model,
                ddp,
                device="cpu",
                train_batch=B // world,
                eval_batches=[7],
                compile_mode="none",
                channels_last=True,
                seed=rank,
            )
        batches = [(x[rank::world], y[rank::world]) for x, y in _fixed_batches(2)]
        _train(ddp, opt, batches)
        states[name] = {k: v.clone() for k, v in model.state_dict().items()}
    return states


@pytest.mark.slow
def test_ddp_warmup_leaves_training_bit_identical():
    for states in on_gloo(_ddp_trained, 2).values():
        _assert_same_state(states["plain"], states["warmed"])


# --- the correctness check: bf16 and compiled steps against fp32 eager ----------


def _losses(mode: str, batches) -> list[float]:
    model, opt = _model_and_optimizer()
    dtype = torch.bfloat16 if "bf16" in mode else None
    return _train(model, opt, batches, dtype)


@pytest.fixture(scope="module")
def fp32_eager_losses():
    return _losses("fp32", _fixed_batches(3))


def test_bf16_autocast_steps_close_to_fp32(fp32_eager_losses):
    losses = _losses("bf16", _fixed_batches(3))
    assert all(math.isfinite(v) for v in losses)
    assert losses == pytest.approx(fp32_eager_losses, rel=5e-2)


@pytest.mark.slow
@pytest.mark.parametrize("precision, rel", [("fp32", 1e-3), ("bf16", 5e-2)])
def test_compiled_warmup_then_steps(fp32_eager_losses, precision, rel):
    """One compilation per precision (tens of seconds on 2 cores) checks everything compiled:
    the warm-up leaves the state bit-identical, compiled every graph the loop needs
    (training and both evaluation shapes: nothing recompiles afterwards), and the
    compiled steps' losses are finite and close to fp32 eager."""
    dtype = torch.bfloat16 if precision == "bf16" else None
    model, opt = _model_and_optimizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_model, eval_model, seconds = warmup.prepare(
        model,
        model,
        device="cpu",
        train_batch=B,
        eval_batches=[B, 5],
        autocast_dtype=dtype,
        compile_mode="default",
        channels_last=True,
    )
    assert train_model is not model and eval_model is not model  # compiled wrappers
    assert seconds > 0
    _assert_same_state(before, model.state_dict())
    assert all(p.grad is None for p in model.parameters())
    assert opt.state_dict()["state"] == {}
    with torch._dynamo.config.patch(error_on_recompile=True):
        losses = _train(train_model, opt, _fixed_batches(3), dtype)
        eval_model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            for n in (B, 5):
                out = eval_model(torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last))
                assert out.shape == (n, 10) and torch.isfinite(out.float()).all()
    assert all(math.isfinite(v) for v in losses)
    assert losses == pytest.approx(fp32_eager_losses, rel=rel)
