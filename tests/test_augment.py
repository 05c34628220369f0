"""reference_impls.augment: batched crop/flip against a per-image reference, and Normalize."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ttabench.reference_impls import cifar10
from ttabench.reference_impls.augment import PAD, SIZE, CropFlip, Normalize, crop_flip


def _reference(images: torch.Tensor, p: CropFlip) -> torch.Tensor:
    out = []
    for img, dy, dx, flip in zip(images, p.dy.tolist(), p.dx.tolist(), p.flip.tolist()):
        crop = F.pad(img, (4, 4, 4, 4))[:, dy : dy + 32, dx : dx + 32]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def _random_uint8(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_constants():
    assert PAD == 4 and SIZE == 32


def test_crop_flip_all_81_offsets_and_both_flips():
    combos = list(itertools.product(range(9), range(9), (False, True)))
    assert len(combos) == 162
    params = CropFlip(
        dy=torch.tensor([c[0] for c in combos]),
        dx=torch.tensor([c[1] for c in combos]),
        flip=torch.tensor([c[2] for c in combos]),
    )
    images = _random_uint8(len(combos), seed=1)
    out = crop_flip(images, params)
    assert out.dtype == torch.uint8 and out.shape == (162, 3, 32, 32)
    assert torch.equal(out, _reference(images, params))


def test_crop_flip_random_draw_matches_reference():
    g = torch.Generator().manual_seed(1234)
    n = 2000
    params = CropFlip.draw(n, g)
    # the draw covers every offset pair and both flips at this size
    seen = set(zip(params.dy.tolist(), params.dx.tolist(), params.flip.tolist()))
    assert len(seen) == 162
    images = _random_uint8(n, seed=2)
    assert torch.equal(crop_flip(images, params), _reference(images, params))


def test_crop_flip_identity_and_pure_flip():
    images = _random_uint8(4, seed=3)
    centre = CropFlip(torch.full((4,), 4), torch.full((4,), 4), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(crop_flip(images, centre), images)
    flipped = CropFlip(torch.full((4,), 4), torch.full((4,), 4), torch.ones(4, dtype=torch.bool))
    assert torch.equal(crop_flip(images, flipped), images.flip(-1))


def test_crop_flip_corner_is_zero_padding():
    images = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    p = CropFlip(torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    out = crop_flip(images, p)
    assert torch.all(out[:, :, :4, :] == 0) and torch.all(out[:, :, :, :4] == 0)
    assert torch.all(out[:, :, 4:, 4:] == 200)


def test_crop_flip_with_indexed_params_on_real_data(subset_dir):
    """The loop indexes images and parameters with the same batch of data-set positions."""
    data = cifar10.load(subset_dir)
    g = torch.Generator().manual_seed(7)
    n = len(data.train_labels)
    params = CropFlip.draw(n, g)
    idx = torch.randperm(n, generator=g)[:256]
    out = crop_flip(data.train_images[idx], params[idx])
    assert torch.equal(out, _reference(data.train_images[idx], params[idx]))


def test_crop_flip_params_index_and_to():
    g = torch.Generator().manual_seed(0)
    p = CropFlip.draw(10, g)
    sub = p[torch.tensor([3, 1])]
    assert sub.dy.tolist() == [p.dy[3].item(), p.dy[1].item()]
    assert sub.dx.tolist() == [p.dx[3].item(), p.dx[1].item()]
    assert sub.flip.tolist() == [p.flip[3].item(), p.flip[1].item()]
    moved = p.to("cpu")
    assert torch.equal(moved.dy, p.dy) and torch.equal(moved.flip, p.flip)


def test_cropflip_draw_deterministic_for_a_seed():
    a = CropFlip.draw(500, torch.Generator().manual_seed(42))
    b = CropFlip.draw(500, torch.Generator().manual_seed(42))
    c = CropFlip.draw(500, torch.Generator().manual_seed(43))
    assert torch.equal(a.dy, b.dy) and torch.equal(a.dx, b.dx) and torch.equal(a.flip, b.flip)
    assert not (torch.equal(a.dy, c.dy) and torch.equal(a.dx, c.dx) and torch.equal(a.flip, c.flip))


def test_cropflip_draw_ranges_and_types():
    p = CropFlip.draw(5000, torch.Generator().manual_seed(0))
    assert p.dy.dtype == torch.int64 and p.dx.dtype == torch.int64 and p.flip.dtype == torch.bool
    assert int(p.dy.min()) == 0 and int(p.dy.max()) == 8
    assert int(p.dx.min()) == 0 and int(p.dx.max()) == 8
    # probability 1/2 of a flip: 5000 draws land well inside 45%..55%
    assert 0.45 < p.flip.float().mean().item() < 0.55


# --- Normalize ------------------------------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize_matches_formula(channels_last):
    images = _random_uint8(16, seed=4)
    images[0] = 0
    images[1] = 255
    norm = Normalize(cifar10.MEAN, cifar10.STD, channels_last=channels_last)
    out = norm(images)
    mean = torch.tensor(cifar10.MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(cifar10.STD, dtype=torch.float64).view(1, 3, 1, 1)
    expected = (images.double() / 255 - mean) / std
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out.double(), expected, rtol=0, atol=1e-6)
    # and the float32 formula written plainly
    plain = (images.float() / 255 - mean.float()) / std.float()
    assert torch.allclose(out, plain, rtol=0, atol=1e-6)


def test_normalize_channels_last_layout():
    images = _random_uint8(4, seed=5)
    out = Normalize(cifar10.MEAN, cifar10.STD, channels_last=True)(images)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()  # really NHWC, not a coincidence of shape
    plain = Normalize(cifar10.MEAN, cifar10.STD, channels_last=False)(images)
    assert plain.is_contiguous()
    assert torch.equal(out, plain)


def test_normalize_of_crop_flip_output():
    images = _random_uint8(8, seed=6)
    p = CropFlip.draw(8, torch.Generator().manual_seed(9))
    out = Normalize(cifar10.MEAN, cifar10.STD, channels_last=True)(crop_flip(images, p))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out.shape == (8, 3, 32, 32)


def test_normalize_bf16_dtype():
    images = _random_uint8(2, seed=8)
    out = Normalize(cifar10.MEAN, cifar10.STD, dtype=torch.bfloat16)(images)
    assert out.dtype == torch.bfloat16
    expected = (
        images.double() / 255 - torch.tensor(cifar10.MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    ) / torch.tensor(cifar10.STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(out.double(), expected, rtol=0, atol=0.02)
