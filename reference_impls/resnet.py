"""ResNet for CIFAR-10: v1 (He et al. 2015) and v2 / pre-activation (He et al. 2016).

Both are the CIFAR variant of section 4.2 of "Deep Residual Learning for
Image Recognition" (arXiv:1512.03385): a 3x3 conv with 16 filters, then
three stages of n basic blocks with 16, 32 and 64 filters on 32x32, 16x16
and 8x8 maps (stride 2 at the first block of stages 2 and 3), global
average pooling and a 10-way linear layer; depth = 6n + 2 (20, 32, 44, 56).

Shortcuts where the shape changes:
- v1 uses option A (arXiv:1512.03385, section 4.2: "we use identity shortcuts
  in all cases"): subsample by 2 and zero-pad the extra channels, no
  parameters. ResNet-20/32/44/56 then have 0.27/0.46/0.66/0.85 M parameters,
  the numbers in the paper's Table 6.
- v2 ("Identity Mappings in Deep Residual Networks", arXiv:1603.05027) puts
  BN and ReLU before each convolution, and a final BN-ReLU before pooling;
  it uses a 1x1 convolution (option B) on the pre-activated input where the
  shape changes, as the authors' released CIFAR code does.

Weights: convolutions Kaiming-normal (fan_out, ReLU gain), BN weight 1 and
bias 0, the linear layer PyTorch's default.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

DEPTHS = (20, 32, 44, 56)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class _ShortcutA(nn.Module):
    """Option A: x[:, :, ::2, ::2] with zero channels appended (no parameters)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.extra = cout - cin

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlockV1(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _ShortcutA(cin, cout) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class BasicBlockV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.projection = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = self.projection(pre) if self.projection is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class CifarResNet(nn.Module):
    def __init__(self, depth: int, version: int = 1, num_classes: int = 10):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {DEPTHS}, got {depth}")
        if version not in (1, 2):
            raise ValueError(f"ResNet version must be 1 or 2, got {version}")
        n = (depth - 2) // 6
        block = BasicBlockV1 if version == 1 else BasicBlockV2
        self.version = version
        self.conv1 = _conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)  # v1: after conv1; v2: the final pre-pool BN
        layers, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(block(cin, cout, stride))
                cin = cout
        self.layers = nn.Sequential(*layers)
        if version == 2:
            self.bn1 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        if self.version == 1:
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layers(x)
        else:
            x = self.layers(self.conv1(x))
            x = F.relu(self.bn1(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def resnet(depth: int, version: int = 1) -> CifarResNet:
    return CifarResNet(depth, version)
