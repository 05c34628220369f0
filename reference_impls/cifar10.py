"""CIFAR-10 in the official "python version" layout, and a synthetic stand-in.

The loader reads ``data_batch_1..5`` and ``test_batch`` from a directory and
returns the whole split as one uint8 tensor (N x 3 x 32 x 32) plus int64
labels: the fast path keeps it that way on the device and never touches
single images in Python. Any number of images per batch file is accepted,
so a slice of the data set in the same format loads unchanged.

The pickles are read with a restricted unpickler that only rebuilds NumPy
arrays: a data file is input, never code.

The synthetic data set is deterministic and learnable (each class is a fixed
low-frequency colour pattern, shifted and drowned in noise per image), so a
demo shows accuracy rising without any download. Anything trained on it is
labelled ``synthetic`` and can never count as a closed-division result.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ttabench import UserError
from ttabench.reference_impls.cifar10_layout import (  # noqa: F401 (the layout's names, here too)
    BATCHES_DIR,
    META_FILE,
    TEST_FILE,
    TRAIN_FILES,
    not_found,
)

FULL_TRAIN_SIZE = 50_000
FULL_TEST_SIZE = 10_000
SYNTHETIC_TRAIN_SIZE = 5000  # synthetic()'s default split sizes
SYNTHETIC_TEST_SIZE = 1000
_PATTERN_STD = 0.41  # the spread of one 8x8 field in [-1, 1] upsampled: every class pattern gets it
NUM_CLASSES = 10
# Per-channel statistics of the full CIFAR-10 training set (0..1 scale), the
# values used by the reference ResNet CIFAR pipelines.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
# Key added to batches.meta of data sets written by write_split(synthetic).
_SYNTHETIC_KEY = b"ttabench_synthetic"


@dataclass
class Cifar10:
    """Both splits in memory, as the timed loop consumes them."""

    train_images: torch.Tensor  # uint8, N x 3 x 32 x 32
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # "cifar10" or "synthetic"
    data_dir: str | None = None
    fingerprint: str = ""  # sha256 over the file contents (or generator parameters)

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def full(self) -> bool:
        """True for the complete data set as distributed (50k train / 10k test)."""
        return (
            not self.synthetic
            and len(self.train_labels) == FULL_TRAIN_SIZE
            and len(self.test_labels) == FULL_TEST_SIZE
        )

    def describe(self) -> dict:
        """What config.json records about the data."""
        if self.synthetic:
            kind = "synthetic"
        elif self.full:
            kind = "cifar10"
        else:
            kind = "cifar10-subset"
        return {
            "name": kind,
            "synthetic": self.synthetic,
            "full": self.full,
            "train_size": len(self.train_labels),
            "test_size": len(self.test_labels),
            "data_dir": self.data_dir,
            "sha256": self.fingerprint,
        }


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and plain containers, refuses every other class."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 pickles of protocol 2 store bytes through _codecs.encode;
        # protocol 5 rebuilds arrays with _frombuffer. Neither runs code.
        ("_codecs", "encode"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(
            f"CIFAR-10 file missing: {path} (run `ttabench data download --dir DIR` or pass --data-dir)"
        ) from None
    except OSError as e:
        raise UserError(f"cannot read CIFAR-10 file {path}: {e.strerror}") from None
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # truncated or foreign files raise many types
        raise UserError(
            f"not a CIFAR-10 batch file (unreadable pickle): {path}: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"not a CIFAR-10 batch file (expected a dict): {path}")
    return obj


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 3 x 32 x 32, int64 N), checked."""
    d = _read_pickle(path)
    data, labels = d.get(b"data"), d.get(b"labels")
    if data is None or labels is None:
        raise UserError(f"not a CIFAR-10 batch file (no b'data'/b'labels'): {path}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(
            f"not a CIFAR-10 batch file (data is {data.dtype} {data.shape}, expected uint8 N x 3072): {path}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise UserError(
            f"corrupt CIFAR-10 batch file ({len(labels)} labels for {data.shape[0]} images): {path}"
        )
    if data.shape[0] == 0:
        raise UserError(f"empty CIFAR-10 batch file: {path}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise UserError(f"corrupt CIFAR-10 batch file (labels outside 0..9): {path}")
    return data.reshape(-1, 3, 32, 32), labels


def _read_split(data_dir: str, names, hasher) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        path = os.path.join(data_dir, name)
        x, y = read_batch(path)
        with open(path, "rb") as f:
            hasher.update(hashlib.sha256(f.read()).digest())
        images.append(x)
        labels.append(y)
    return (torch.from_numpy(np.concatenate(images)).contiguous(), torch.from_numpy(np.concatenate(labels)))


def load(data_dir: str) -> Cifar10:
    """Read both splits from a `cifar-10-batches-py` directory."""
    if not os.path.isdir(data_dir):
        raise not_found(data_dir)
    hasher = hashlib.sha256()
    train_x, train_y = _read_split(data_dir, TRAIN_FILES, hasher)
    test_x, test_y = _read_split(data_dir, (TEST_FILE,), hasher)
    source = "cifar10"
    meta_path = os.path.join(data_dir, META_FILE)
    if os.path.exists(meta_path) and _read_pickle(meta_path).get(_SYNTHETIC_KEY):
        source = "synthetic"
    return Cifar10(
        train_x, train_y, test_x, test_y, source=source, data_dir=data_dir, fingerprint=hasher.hexdigest()
    )


def synthetic(
    train_size: int = SYNTHETIC_TRAIN_SIZE,
    test_size: int = SYNTHETIC_TEST_SIZE,
    seed: int = 0,
    noise: float = 70.0,
    shared: float = 0.5,
) -> Cifar10:
    """A deterministic, learnable stand-in for CIFAR-10 (no download needed).

    Class c's pattern is P_c = shared * G + (1 - shared) * U_c, where G (common to all
    classes) and U_c (the class's own) are smooth random colour fields (8x8, upsampled to
    32x32); every P_c is scaled to the same spread. Each image is P_c rolled by a random
    offset of up to 4 pixels, at a random contrast, plus Gaussian noise of std `noise`
    (0..255 scale). The common part makes the classes alike, so that ResNet-20 under the
    closed recipe climbs over several evaluations of `make demo` instead of jumping from
    chance to the end in one (shared=0, the earlier version, did that).
    """
    g = torch.Generator().manual_seed(seed)
    own = torch.rand(NUM_CLASSES, 3, 8, 8, generator=g) * 2 - 1
    common = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    coarse = shared * common + (1 - shared) * own
    patterns = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    patterns = patterns * (_PATTERN_STD / patterns.flatten(1).std(1))[:, None, None, None]

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % NUM_CLASSES
        labels = labels[torch.randperm(n, generator=g)]
        shifts = torch.randint(-4, 5, (n, 2), generator=g)
        ar = torch.arange(32)
        rows = (ar[None, :] - shifts[:, :1]) % 32  # a circular shift as one gather
        cols = (ar[None, :] - shifts[:, 1:]) % 32
        x = patterns[
            labels[:, None, None, None],
            torch.arange(3)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        contrast = 40 + 50 * torch.rand(n, 1, 1, 1, generator=g)
        x = 128 + contrast * x + noise * torch.randn(x.shape, generator=g)
        return x.round().clamp(0, 255).to(torch.uint8), labels.to(torch.int64)

    train_x, train_y = make(train_size)
    test_x, test_y = make(test_size)
    tag = f"synthetic-v2:train={train_size}:test={test_size}:seed={seed}:noise={noise}:shared={shared}"
    return Cifar10(
        train_x,
        train_y,
        test_x,
        test_y,
        source="synthetic",
        fingerprint=hashlib.sha256(tag.encode()).hexdigest(),
    )


def write(data: Cifar10, out_dir: str) -> None:
    """Write a data set in the official layout (used for tests and for the
    synthetic set on disk). Training images are split over the five batch files."""
    os.makedirs(out_dir, exist_ok=True)

    def dump(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        payload = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in y],
            b"data": x.reshape(len(x), 3072).numpy(),
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(y))],
        }
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=4)
        os.replace(tmp, os.path.join(out_dir, name))

    chunks = torch.arange(len(data.train_labels)).tensor_split(len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks):
        dump(name, data.train_images[idx], data.train_labels[idx])
    dump(TEST_FILE, data.test_images, data.test_labels)
    meta = {b"label_names": [n.encode() for n in LABEL_NAMES], b"num_cases_per_batch": int(len(chunks[0]))}
    if data.synthetic:
        meta[_SYNTHETIC_KEY] = True
    tmp = os.path.join(out_dir, f".{META_FILE}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(meta, f, protocol=4)
    os.replace(tmp, os.path.join(out_dir, META_FILE))


LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
