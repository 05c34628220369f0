"""Training augmentation and normalisation on whole batches of uint8 images.

The closed-division augmentation is the standard CIFAR-10 one (He et al.
2015, section 4.2): zero-pad 4 pixels on each side, take a random 32x32 crop,
flip horizontally with probability 1/2. Here it is one gather per batch:
the crop offsets and the flip fold into a pair of index grids, so no image
is ever handled alone in Python.

The random choices are drawn once per epoch for every image of the data set,
indexed by the image's position in the data set, from a generator seeded by
(seed, epoch). An image therefore gets the same crop and flip whatever the
number of workers or the shard it lands in, which is what makes a 2-worker
run step-for-step comparable with a 1-worker run of the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PAD = 4
SIZE = 32


@dataclass
class CropFlip:
    """Per-image augmentation parameters for one epoch."""

    dy: torch.Tensor  # int64, offset of the crop in the padded image, 0..2*PAD
    dx: torch.Tensor
    flip: torch.Tensor  # bool

    @classmethod
    def draw(cls, n: int, generator: torch.Generator) -> CropFlip:
        dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        return cls(dy, dx, flip)

    def to(self, device) -> CropFlip:
        return CropFlip(self.dy.to(device), self.dx.to(device), self.flip.to(device))

    def __getitem__(self, idx) -> CropFlip:
        return CropFlip(self.dy[idx], self.dx[idx], self.flip[idx])


def crop_flip(images: torch.Tensor, params: CropFlip) -> torch.Tensor:
    """Pad-4 random crop + horizontal flip of a uint8 batch N x C x 32 x 32.

    Equivalent to, per image: ``pad(img, 4)[:, dy:dy+32, dx:dx+32]`` then
    ``flip(-1)`` where ``flip`` is set.
    """
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    ar = torch.arange(SIZE, device=images.device)
    rows = params.dy[:, None] + ar  # N x 32
    cols = torch.where(
        params.flip[:, None], params.dx[:, None] + (SIZE - 1 - ar), params.dx[:, None] + ar
    )  # reading columns backwards is the flip
    n_idx = torch.arange(n, device=images.device)[:, None, None, None]
    c_idx = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


class Normalize:
    """uint8 N x 3 x H x W -> float, per-channel (x/255 - mean) / std, in one fused op."""

    def __init__(self, mean, std, device="cpu", dtype=torch.float32, channels_last: bool = False):
        mean = torch.tensor(mean, dtype=torch.float32, device=device)
        std = torch.tensor(std, dtype=torch.float32, device=device)
        # x * scale + shift with scale = 1/(255 std), shift = -mean/std
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(dtype)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(dtype)
        self.dtype = dtype
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, images.to(self.dtype), self.scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
