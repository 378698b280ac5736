"""PANN-family CNN audio tower (CNN6 / CNN10 / CNN14 and the 9-layer max-pool variant), our code.

PANNs (Kong et al., 2020) are the CNN family the CLAP paper compares with HTSAT. Layout, on a
log-mel ``(B, C, T, F)`` input (C = 4 views with fusion, else 1):

    [BatchNorm over mel bins] -> conv blocks (conv-BN-ReLU x1 or x2, then 2x2 pooling; the last
    block does not pool) -> mean over frequency -> head -> (B, width)

Heads: ``pann`` = max + mean over time, dropout, fc + ReLU (PANN's embedding layer); ``max`` =
max over time (the DCASE "CNN9" embedding net, e.g. the ``aisfx`` weights). Block modules are
named ``conv_block1..N`` with ``conv1/bn1/conv2/bn2`` inside, the names those public weights use,
so their state dicts load without renaming.

Fusion (``fusion=True``): the paper's attentional feature fusion for long audio, in our own CNN
form. The global view goes through block 1; the three local 10 s crops go through a strided
5x5 convolution each, are stacked along channels and mapped to block 1's width; an AFF module
(local + global channel attention) mixes both, and ``where(is_longer)`` keeps the plain global
path for clips with nothing to fuse, so short and long clips share one graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# CNN10's settings; the other presets say how they differ from it.
_CNN10 = dict(
    widths=[64, 128, 256, 512],
    convs_per_block=2,
    kernel_size=3,
    pool_type="avg",
    input_norm=True,
    head="pann",
    dropout=0.2,
)
PRESETS: dict[str, dict] = {
    "cnn6": {**_CNN10, "convs_per_block": 1, "kernel_size": 5},
    "cnn10": _CNN10,
    "cnn14": {**_CNN10, "widths": [64, 128, 256, 512, 1024, 2048]},
    "cnn9-max": {**_CNN10, "pool_type": "max", "input_norm": False, "head": "max", "dropout": 0.0},
}


def resolve(settings: dict) -> dict:
    """Preset values, overridden by whatever the config sets explicitly."""
    preset = settings.get("preset") or "cnn10"
    given = {k: v for k, v in settings.items() if v is not None and k not in ("type", "preset", "fusion")}
    return {**PRESETS[preset], "embed_width": None, **given}


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, convs: int, kernel: int):
        super().__init__()
        self.convs = convs
        pad = kernel // 2
        self.conv1 = nn.Conv2d(cin, cout, kernel, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        if convs == 2:
            self.conv2 = nn.Conv2d(cout, cout, kernel, padding=pad, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
        for conv in (self.conv1, getattr(self, "conv2", None)):
            if conv is not None:
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor, pool: bool, pool_type: str) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.convs == 2:
            x = F.relu(self.bn2(self.conv2(x)))
        if not pool:
            return x
        return F.avg_pool2d(x, 2) if pool_type == "avg" else F.max_pool2d(x, 2)


class AttentionalFusion(nn.Module):
    """AFF (Dai et al., 2021): out = 2*x*w + 2*y*(1-w), w = sigmoid(local_att(x+y) + global_att(x+y)).

    The global branch has no BatchNorm: it sees one value per channel and clip, and a per-rank
    batch of one would make BatchNorm fail in training.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.local_att = nn.Sequential(
            nn.Conv2d(channels, inner, 1),
            nn.BatchNorm2d(inner),
            nn.ReLU(),
            nn.Conv2d(inner, channels, 1),
            nn.BatchNorm2d(channels),
        )
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, inner, 1), nn.ReLU(), nn.Conv2d(inner, channels, 1)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = x + y
        weight = torch.sigmoid(self.local_att(both) + self.global_att(both))
        return 2 * x * weight + 2 * y * (1 - weight)


class CnnTower(nn.Module):
    def __init__(self, n_mels: int, settings: dict, fusion: bool = False):
        super().__init__()
        cfg = resolve(settings)
        self.settings = cfg
        self.fusion = fusion
        self.pool_type, self.head, self.dropout = cfg["pool_type"], cfg["head"], float(cfg["dropout"])
        widths = cfg["widths"]
        self.bn0 = nn.BatchNorm2d(n_mels) if cfg["input_norm"] else None
        self.block_names = []
        cin = 1
        for i, width in enumerate(widths, start=1):
            self.add_module(f"conv_block{i}", ConvBlock(cin, width, cfg["convs_per_block"], cfg["kernel_size"]))
            self.block_names.append(f"conv_block{i}")
            cin = width
        self.width = cfg["embed_width"] or widths[-1]
        self.fc1 = nn.Linear(widths[-1], self.width) if self.head == "pann" else None
        if self.head != "pann" and cfg["embed_width"] not in (None, widths[-1]):
            raise ValueError("embed_width needs the 'pann' head (the 'max' head has no fc layer)")
        if fusion:
            first = widths[0]
            self.local_conv = nn.Conv2d(1, first, 5, stride=2, padding=2, bias=False)
            self.local_merge = nn.Sequential(nn.Conv2d(3 * first, first, 1, bias=False), nn.BatchNorm2d(first))
            self.fusion_model = AttentionalFusion(first)

    def prefer_channels_last(self) -> CnnTower:
        """Training speed: oneDNN convolutions run 15-20 % faster on CPU in channels-last layout
        (bench/train.py). Same numbers, another memory layout; export ignores it."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.bn0 is None else self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout else x

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        if getattr(self, "channels_last", False):
            input_features = input_features.contiguous(memory_format=torch.channels_last)
        x = self._normalize(input_features[:, :1])
        blocks = [getattr(self, name) for name in self.block_names]
        x = self._drop(blocks[0](x, True, self.pool_type))
        if self.fusion:
            batch, _, frames, bins = input_features.shape
            local = self._normalize(input_features[:, 1:4].reshape(batch * 3, 1, frames, bins))
            local = self.local_conv(local)
            local = local.reshape(batch, 3 * local.shape[1], *local.shape[2:])
            local = self.local_merge(local)[..., : x.shape[2], : x.shape[3]]
            fused = self.fusion_model(x, local)
            x = torch.where(is_longer.reshape(-1, 1, 1, 1), fused, x)
        for i, block in enumerate(blocks[1:], start=2):
            x = self._drop(block(x, i < len(blocks), self.pool_type))
        x = x.mean(dim=3)  # over frequency -> (B, C, T')
        if self.head == "max":
            return x.amax(dim=2)
        x = self._drop(x.amax(dim=2) + x.mean(dim=2))
        return F.relu(self.fc1(x))
