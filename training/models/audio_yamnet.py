"""YAMNet (Google's AudioSet tagger) as a plain torch MobileNetV1, and its CLAP audio-tower wrapper.

Why a port and not the TFLite file: the project trains and exports torch towers to ONNX; the
TFLite model is int8 end to end, cannot be fine-tuned and cannot join the ONNX graph. The weights
come from ``training.convert.yamnet.load_yamnet`` (dequantized from the TFLite file); this module
only defines the float32 network, so it imports nothing beyond torch.

Network (what the TFLite graph contains, checked op by op by the converter):

    patches (N, 96, 64) log-mel, frames x mel bins
      -> (N, 1, 96, 64)                        NCHW; TFLite feeds NHWC (1, 96, 64, 1): H = frames
      -> stem: 3x3 conv, stride 2, 32 ch       -> (N, 32, 48, 32)
      -> 13 blocks: depthwise 3x3 (stride s) + pointwise 1x1, ReLU6 after each conv
         strides 1,2,1,2,1,2,1,1,1,1,1,2,1     -> (N, 1024, 3, 2)
      -> mean over (H, W)                      -> embedding (N, 1024)
      -> classifier: dense 1024 -> 521         -> logits (N, 521); sigmoid gives AudioSet scores

Batch norm is already folded into the conv biases in the source weights, so there is none here.
The activation is ReLU6 because every conv in the graph carries a fused RELU6 (the TF1 slim
MobileNet YAMNet was trained with); a ReLU port would diverge wherever activations exceed 6.
Padding is TensorFlow "SAME": for stride 2 on an even size the one extra row/column goes after
(bottom/right), which :class:`SameConv2d` does with an explicit ``F.pad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PATCH_FRAMES = 96
MEL_BINS = 64
EMBEDDING_WIDTH = 1024
NUM_CLASSES = 521
STEM_WIDTH = 32
# (stride, output width) of the 13 depthwise-separable blocks, MobileNetV1 as YAMNet uses it.
BLOCKS: tuple[tuple[int, int], ...] = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis: (before, after); the odd extra goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding for a fixed input size.

    The pads are computed once from the (H, W) the layer sees, so the graph holds constants (the
    ONNX export keeps only the batch dynamic). The symmetric part goes to the conv's own padding;
    any asymmetric remainder is an explicit ``F.pad`` after the bottom/right edge. Subclassing
    keeps the state-dict keys ``weight``/``bias``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, in_hw: tuple[int, int], groups: int = 1):
        ph = same_padding(in_hw[0], kernel, stride)
        pw = same_padding(in_hw[1], kernel, stride)
        super().__init__(cin, cout, kernel, stride=stride, padding=(ph[0], pw[0]), groups=groups)
        # F.pad order: (left, right, top, bottom) for the last two dims
        self.extra_pad = (0, pw[1] - pw[0], 0, ph[1] - ph[0])
        self.out_hw = (-(-in_hw[0] // stride), -(-in_hw[1] // stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.extra_pad):
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (carries the stride) then pointwise 1x1, each followed by ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int, in_hw: tuple[int, int]):
        super().__init__()
        self.depthwise = SameConv2d(cin, cin, 3, stride, in_hw, groups=cin)
        self.pointwise = SameConv2d(cin, cout, 1, 1, self.depthwise.out_hw)
        self.out_hw = self.pointwise.out_hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.pointwise(F.relu6(self.depthwise(x))))


class YamnetNet(nn.Module):
    """MobileNetV1 YAMNet on one log-mel patch per row.

    ``forward(patches)``: ``(N, 96, 64)`` float32 log-mel (``log(mel + 0.001)``, frames x mel
    bins) -> ``(embedding (N, 1024), logits (N, 521))``. Scores are ``sigmoid(logits)``.
    Randomly initialised; load YAMNet weights with ``training.convert.yamnet.load_yamnet``.
    """

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(1, STEM_WIDTH, 3, 2, (PATCH_FRAMES, MEL_BINS))
        hw, cin = self.stem.out_hw, STEM_WIDTH
        blocks = []
        for stride, cout in BLOCKS:
            blocks.append(SeparableBlock(cin, cout, stride, hw))
            hw, cin = blocks[-1].out_hw, cout
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(EMBEDDING_WIDTH, NUM_CLASSES)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if patches.dim() != 3 or tuple(patches.shape[1:]) != (PATCH_FRAMES, MEL_BINS):
            raise ValueError(f"expected patches (N, {PATCH_FRAMES}, {MEL_BINS}), got {tuple(patches.shape)}")
        x = F.relu6(self.stem(patches.unsqueeze(1)))
        for block in self.blocks:
            x = block(x)
        embedding = x.mean(dim=(2, 3))
        return embedding, self.classifier(embedding)


class YamnetTower(nn.Module):
    """YAMNet as a CLAP audio tower: clip log-mel frames -> mean over 0.96 s patches.

    ``forward(input_features (B, 1, T, 64), is_longer)`` -> ``(B, 1545)``: for each clip, the mean
    over its patches (96 frames every 48; frames after the last full patch are dropped, so the
    caller pads) of ``concat([embedding (1024), sigmoid(logits) (521)])``. YAMNet was trained on
    0.96 s patches and its clip outputs are patch means; feeding a whole clip in one pass collapses
    accuracy. ``is_longer`` is accepted for the tower interface and ignored (no fusion).
    """

    width = EMBEDDING_WIDTH + NUM_CLASSES
    embedding_width = EMBEDDING_WIDTH
    num_classes = NUM_CLASSES
    patch_frames = PATCH_FRAMES
    patch_hop = 48

    def __init__(self, net: YamnetNet | None = None):
        super().__init__()
        self.net = net if net is not None else YamnetNet()

    def patch_outputs(self, patches: torch.Tensor) -> torch.Tensor:
        """``(N, 96, 64)`` -> ``(N, 1545)``: embedding and sigmoid scores of each patch."""
        embedding, logits = self.net(patches)
        return torch.cat([embedding, torch.sigmoid(logits)], dim=1)

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor | None = None) -> torch.Tensor:
        if input_features.dim() != 4 or input_features.shape[1] != 1 or input_features.shape[3] != MEL_BINS:
            raise ValueError(f"expected input_features (B, 1, T, {MEL_BINS}), got {tuple(input_features.shape)}")
        if input_features.shape[2] < self.patch_frames:
            raise ValueError(f"need at least {self.patch_frames} frames, got {input_features.shape[2]}")
        batch = input_features.shape[0]
        # unfold: (B, T, 64) -> (B, P, 64, 96), window last; back to frames x mels per patch
        patches = input_features[:, 0].unfold(1, self.patch_frames, self.patch_hop).transpose(2, 3)
        count = patches.shape[1]
        # Clips of different lengths share a batch NaN-filled past their end (training's collate):
        # a patch is real when its last frame is, and only real patches enter a clip's mean.
        real = ~torch.isnan(patches[:, :, -1, 0])
        if bool(real.all()):
            out = self.patch_outputs(patches.reshape(batch * count, self.patch_frames, MEL_BINS))
            return out.reshape(batch, count, self.width).mean(dim=1)
        out = self.patch_outputs(patches[real])  # (N_real, W), only the patches that exist
        owner = torch.arange(batch, device=out.device).repeat_interleave(real.sum(dim=1))
        sums = torch.zeros(batch, self.width, dtype=out.dtype, device=out.device).index_add_(0, owner, out)
        return sums / real.sum(dim=1, keepdim=True).clamp(min=1).to(out.dtype)
