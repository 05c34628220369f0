"""A small CNN, not a ResNet, as an open-division submission.

Four 3x3 convolutions with batch norm and ReLU (32, 64, 128, 256 channels),
2x2 max pooling after each of the first three, global average pooling and a
linear layer: 0.39 M parameters and about 15 M multiply-adds per image
(ResNet-20: 0.27 M and 41 M).

`small_cnn` is the model alone: it trains with the closed recipe's optimizer,
learning-rate schedule, batch and augmentation. One process, on the built-in
synthetic data (offline), then on CIFAR-10 with two workers and under Horovod:

    ttabench run --division open --model examples/small_cnn.py:small_cnn --synthetic --max-epochs 3
    ttabench run --division open --model examples/small_cnn.py:small_cnn --data-dir DIR --workers 2 --target 0.8
    ttabench run --division open --model examples/small_cnn.py:small_cnn --data-dir DIR --workers 2 --backend horovod --max-epochs 10

`small_cnn_tuned` is the same model with every optional hook of a Submission
set (ttabench.divisions.open): its own optimizer and one-cycle schedule, a
batch of 64 per worker, a label-smoothing loss and no augmentation:

    ttabench run --division open --model examples/small_cnn.py:small_cnn_tuned --synthetic --max-epochs 3

Results land in ttabench-results/<system>/small_cnn/open/<run-id>/ (the callable's name
is the benchmark name of an open run).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ttabench.divisions.open import RunInfo, Submission


class SmallCNN(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            # No conv bias: the batch norm right after it has one.
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))  # 32 -> 16 -> 8 -> 4
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        # flatten, not view: the harness may hand the model channels_last tensors.
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def small_cnn() -> nn.Module:
    return SmallCNN()


def sgd_one_cycle(model: nn.Module, run: RunInfo):
    """Nesterov SGD; the learning rate climbs from peak/10 to the peak over the first 30% of
    the run, then falls linearly to zero at its end."""
    peak = 0.2 * run.global_batch / 128
    optimizer = torch.optim.SGD(model.parameters(), lr=peak, momentum=0.9, nesterov=True, weight_decay=5e-4)
    epochs = run.epochs or 30.0  # a run stopped by --target alone: plan for 30 epochs
    rise = 0.3 * epochs

    def lr_at(epoch: float) -> float:
        if epoch < rise:
            return peak * (0.1 + 0.9 * epoch / rise)
        return peak * max(0.0, (epochs - epoch) / (epochs - rise))

    return optimizer, lr_at


def label_smoothing_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The harness runs backward and the (data-parallel) optimizer step on what this returns.
    return F.cross_entropy(model(x), y, label_smoothing=0.1)


small_cnn_tuned = Submission(
    model=SmallCNN, optimizer=sgd_one_cycle, batch_size=64, train_step=label_smoothing_step, augment="none"
)
