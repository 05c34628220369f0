"""The closed ResNet-20 trained with AdamW and a cosine schedule: an open-division run.

Only the optimizer and its learning-rate schedule change; the model
(`--benchmark resnet20`), data, batch and augmentation are the closed
recipe's. Any change to the recipe makes a run open-division, so `--optimizer`
needs `--division open`:

    ttabench run --division open --benchmark resnet20 --optimizer examples/adam_resnet.py:adamw_cosine --synthetic --max-epochs 3
    ttabench run --division open --benchmark resnet20 --optimizer examples/adam_resnet.py:adamw_cosine --data-dir DIR --workers 2 --max-epochs 30

Results land in ttabench-results/<system>/resnet20/open/<run-id>/; config.json's
"submission" records this file's path and sha256, and "recipe" the AdamW
hyperparameters of each parameter group.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ttabench.divisions.open import RunInfo


def adamw_cosine(model: nn.Module, run: RunInfo):
    """AdamW, weight decay on weights only (not on batch-norm parameters or biases); linear
    warm-up from peak/10 over the first 2 epochs (or 10% of a shorter run), then a cosine
    decay to zero at the end of the run."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    # Adam's step size scales with the square root of the batch, not linearly as SGD's.
    peak = 2e-3 * math.sqrt(run.global_batch / 128)
    optimizer = torch.optim.AdamW(
        [{"params": weights, "weight_decay": 0.05}, {"params": others, "weight_decay": 0.0}],
        lr=peak,
        betas=(0.9, 0.999),
    )
    epochs = run.epochs or 50.0  # a run stopped by --target alone: plan for 50 epochs
    warmup = min(2.0, 0.1 * epochs)

    def lr_at(epoch: float) -> float:
        if epoch < warmup:
            return peak * (0.1 + 0.9 * epoch / warmup)
        done = min(1.0, (epoch - warmup) / (epochs - warmup))
        return peak * 0.5 * (1 + math.cos(math.pi * done))

    return optimizer, lr_at
