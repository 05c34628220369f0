"""CIFAR-10's "python version" layout on disk: the folder and file names, and the check that a
folder holds them. Apart from the loader (cifar10.py) because it needs no torch: `ttabench run`
and `submit` check a --data-dir this way before anything imports torch, so a wrong path fails
in a fraction of a second."""

from __future__ import annotations

import os

from ttabench import UserError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
BATCHES_DIR = "cifar-10-batches-py"  # the folder the official archive unpacks to


def not_found(data_dir: str) -> UserError:
    return UserError(
        f"CIFAR-10 directory not found: {data_dir} (run `ttabench data download --dir DIR` or pass --data-dir)"
    )


def check_files(data_dir: str) -> None:
    """Fail early, in one line, when the folder or one of its batch files is missing."""
    if not os.path.isdir(data_dir):
        raise not_found(data_dir)
    child = os.path.join(data_dir, BATCHES_DIR)
    if not os.path.isfile(os.path.join(data_dir, TRAIN_FILES[0])) and os.path.isdir(child):
        raise UserError(
            f"{data_dir} holds no batch files but has a {BATCHES_DIR} folder: did you mean --data-dir {child}?"
        )
    for name in TRAIN_FILES + (TEST_FILE,):
        if not os.path.isfile(os.path.join(data_dir, name)):
            raise UserError(
                f"CIFAR-10 file missing: {os.path.join(data_dir, name)} "
                "(run `ttabench data download --dir DIR` or pass --data-dir)"
            )
