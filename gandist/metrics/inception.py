"""The FID Inception-v3 in plain torch: the network behind published FID numbers.

FID as published (Heusel et al. 2017, and every paper that compares with it) uses the 2015
TensorFlow Inception-v3 graph ``inception-2015-12-05``. Its PyTorch port
(``pt_inception-2015-12-05-6726825d.pth``, released by pytorch-fid and mirrored by
torch-fidelity under the name ``weights-inception-2015-12-05-6726825d.pth``: the same bytes) fits
torchvision's Inception-v3 layout with four departures from it, all reproduced here:

- the average pools inside the 35x35 (A), 17x17 (C) and first 8x8 (E) blocks leave padded zeros
  out of the mean (TF's ``AVG`` pooling; ``count_include_pad=False``);
- the last 8x8 block pools with a *max* pool (a quirk of that graph, kept because the numbers
  depend on it);
- 1008 classes instead of 1000 (the TF graph's label map);
- no auxiliary classifier.

We build the network here instead of importing torchvision or torch-fidelity: on the CPU torch
that ``scripts/setup.sh`` installs, ``pip install torchvision`` pulls a second, CUDA torch, and
torch-fidelity imports torchvision at import time. Module names follow the published state dict,
so the file loads key for key.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from gandist.errors import ConfigError
from gandist.metrics.inception_file import WEIGHTS_SHA256, check_weights_file
#: Side the network was trained at; every input is resized to it.
INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as the TF graph) -> ReLU. Keys: ``conv.*``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool divides by the number of real (unpadded) pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 -> 64+64+96+pool_channels."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_channels, 1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_tf_avg_pool(x)),
            ],
            1,
        )


class BlockB(nn.Module):
    """35x35 -> 17x17 reduction: strided 3x3 | 1x1-3x3-strided 3x3 | max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            1,
        )


class BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1) -> 4 x 192 channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c = channels_7x7
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c, 1)
        self.branch7x7_2 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c, 1)
        self.branch7x7dbl_2 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class BlockD(nn.Module):
    """17x17 -> 8x8 reduction."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class BlockE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs -> 320 + 768 + 768 + 192 = 2048 channels.

    ``max_pool``: the second E block of the FID graph max-pools its pool branch.
    """

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """uint8 images B x 3 x H x W -> (pool features B x 2048, logits B x 1008).

    Inputs of any size are resized to 299 x 299 first, bilinearly with ``align_corners=False``
    and no antialiasing, as pytorch-fid does; pixel values map 0..255 -> -1..1.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)  # B x 32 x 149 x 149
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)  # 147 x 147
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)  # 147 x 147, then max pool -> 73 x 73
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)  # 71 x 71, then max pool -> 35 x 35
        self.Mixed_5b = BlockA(192, pool_channels=32)  # 256 x 35 x 35
        self.Mixed_5c = BlockA(256, pool_channels=64)  # 288
        self.Mixed_5d = BlockA(288, pool_channels=64)  # 288
        self.Mixed_6a = BlockB(288)  # 768 x 17 x 17
        self.Mixed_6b = BlockC(768, channels_7x7=128)
        self.Mixed_6c = BlockC(768, channels_7x7=160)
        self.Mixed_6d = BlockC(768, channels_7x7=160)
        self.Mixed_6e = BlockC(768, channels_7x7=192)
        self.Mixed_7a = BlockD(768)  # 1280 x 8 x 8
        self.Mixed_7b = BlockE(1280, max_pool=False)  # 2048 x 8 x 8
        self.Mixed_7c = BlockE(2048, max_pool=True)  # 2048 x 8 x 8
        self.fc = nn.Linear(NUM_FEATURES, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised B x 3 x 299 x 299 in [-1, 1] -> B x 2048 (the pool_3 layer FID uses)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(preprocess(images_bchw))
        # The Inception Score of the original TF code multiplies pool_3 by the softmax weights
        # without the bias (torch-fidelity's "logits_unbiased"); keep that definition.
        logits = feats @ self.fc.weight.T
        return feats, logits


def resize_to_input(x_bchw: torch.Tensor) -> torch.Tensor:
    """Float images -> 299 x 299, bilinear with half-pixel centres (``align_corners=False``) and
    no antialiasing: the reference's resize, so features match numbers computed with it."""
    if tuple(x_bchw.shape[-2:]) == (INPUT_SIZE, INPUT_SIZE):
        return x_bchw
    return F.interpolate(x_bchw, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


def preprocess(images_bchw: torch.Tensor) -> torch.Tensor:
    """uint8 B x {1,3} x H x W -> float B x 3 x 299 x 299 in [-1, 1]."""
    x = images_bchw.float().div(255.0)
    if x.shape[1] == 1:  # the network expects RGB
        x = x.expand(-1, 3, -1, -1)
    return resize_to_input(x).mul(2.0).sub(1.0)


def load_fid_inception(path: str | Path, *, expected_sha256: str | None = WEIGHTS_SHA256) -> FIDInceptionV3:
    """Build the network and load ``path`` (a torch state dict with the published key names).

    The file's sha256 must be ``expected_sha256`` (see ``check_weights_file``; tests pass ``None``
    to load made-up weights). Bad files raise ``ConfigError`` (exit 2) naming
    ``metrics.inception_weights`` and the file.
    """
    digest = check_weights_file(path, expected_sha256)
    path = Path(path)
    where = f"metrics.inception_weights: {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise ConfigError(f"{where}: not a readable torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: expected a state dict, got {type(state).__name__}")
    model = FIDInceptionV3()
    expected = model.state_dict()
    # BatchNorm's step counter is not used at inference; files saved without it still load.
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing = sorted(required - state.keys())
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"{where}: not the FID Inception-v3 state dict: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"{where}: {key} has shape {shape}, expected {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=False)
    #: Names the weights beside every number they produce.
    model.weights_sha256 = digest
    return model.eval().requires_grad_(False)
