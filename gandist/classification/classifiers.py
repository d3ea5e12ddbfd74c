"""Image classifiers for ``gandist classify`` and the domain-classifier feature extractor,
looked up by name.

CIFAR-style ResNets (He et al., 2016, section 4.2): a 3x3 stem and three stages of basic blocks
at widths w, 2w, 4w, the last two downsampling by 2, then global average pooling. Global pooling
makes them work for any image size and channel count; small widths keep them quick on a CPU.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNet(nn.Module):
    """``features(x)`` is the pooled penultimate layer (B x 4w), ``forward(x)`` the logits (B x K).

    Input: images scaled to [-1, 1], B x C x H x W.
    """

    def __init__(self, channels: int, num_classes: int, *, blocks_per_stage: int, width: int, image_size: int = 32):
        super().__init__()
        # Suited to the image size: the residual stages start at <= 16 x 16 pixels. Larger inputs
        # are average-pooled after a full-resolution stem conv, which keeps the cost per image
        # nearly flat in the image size (a 32x32 input costs ~4x less than CIFAR's ResNet).
        stem_pool = 1
        while image_size // stem_pool > 16:
            stem_pool *= 2
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.AvgPool2d(stem_pool) if stem_pool > 1 else nn.Identity(),
        )
        layers: list[nn.Module] = []
        in_ch = width
        for stage, out_ch in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks_per_stage):
                layers.append(BasicBlock(in_ch, out_ch, stride=2 if stage > 0 and i == 0 else 1))
                in_ch = out_ch
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch

    def features(self, x_bchw: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x_bchw))
        return h.mean(dim=(2, 3))

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x_bchw))


def _resnet(blocks: int, width: int) -> Callable[[int, int, int], ResNet]:
    return lambda channels, num_classes, image_size: ResNet(channels, num_classes, blocks_per_stage=blocks, width=width, image_size=image_size)


# name -> builder(channels, num_classes, image_size). 6n+2 layers: resnet8 (n=1), resnet14 (n=2), resnet20 (n=3).
_REGISTRY: dict[str, Callable[[int, int, int], ResNet]] = {
    "resnet8": _resnet(1, 16),
    "resnet14": _resnet(2, 16),
    "resnet20": _resnet(3, 16),
    "resnet20w32": _resnet(3, 32),
}


def available_classifiers() -> list[str]:
    return list(_REGISTRY)


def build_classifier(name: str, channels: int, num_classes: int, image_size: int) -> ResNet:
    if name not in _REGISTRY:
        raise ValueError(f"--arch: unknown classifier {name!r}; allowed values: {', '.join(available_classifiers())}")
    return _REGISTRY[name](channels, num_classes, image_size)
