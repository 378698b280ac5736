"""HTSAT audio tower: transformers' CLAP audio encoder with an export-friendly forward.

transformers' ``ClapAudioEncoder`` is the definition (weights, layers); this forward changes only
what is wrong for export and determinism:

* Fusion: ``ClapAudioPatchEmbed`` runs the local branch only on clips flagged ``is_longer``
  (``torch.where`` + index assignment). Tracing bakes the number of long clips into the graph and
  the dynamo exporter rejects the data-dependent branch. Here the fused path runs for EVERY clip
  and ``where`` selects per clip: the same arithmetic per clip, for any mix of long and short clips,
  in training and in the exported graph alike.
* The bicubic time resize of ``reshape_mel2img`` is a constant matrix product (see ``_mel2img``).

Input ``(B, C, T=1001, F=64)`` float32 (C=4 with fusion, else 1) and ``is_longer`` (B,) bool;
output the pooled ``(B, hidden_size)`` features that the projection head maps into the space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLIP_FRAMES = 1001  # STFT frames of one 10 s clip in the LAION front end (480 000 samples, hop 480)


def _resize_matrix(frames: int, width: int) -> torch.Tensor:
    """(width, frames) matrix R with R @ x == interpolate(x, (width, F), bicubic, align_corners=True)."""
    eye = torch.eye(frames).reshape(1, 1, frames, frames)
    with torch.no_grad():
        return F.interpolate(eye, (width, frames), mode="bicubic", align_corners=True)[0, 0].contiguous()


def clap_audio_config(settings: dict, fusion: bool):
    from transformers import ClapAudioConfig

    return ClapAudioConfig(**{**settings, "enable_fusion": fusion, "fusion_type": "aff_2d" if fusion else None})


class HtsatTower(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.fusion = bool(encoder.enable_fusion)
        self.width = int(encoder.num_features)
        width = int(encoder.spec_size * encoder.freq_ratio)
        self.register_buffer("time_resize", _resize_matrix(CLIP_FRAMES, width), persistent=False)

    @classmethod
    def from_config(cls, settings: dict, fusion: bool) -> HtsatTower:
        # ClapAudioModel (a PreTrainedModel) applies transformers' weight init; keep its encoder.
        from transformers import ClapAudioModel

        return cls(ClapAudioModel(clap_audio_config(settings, fusion)).audio_encoder)

    def _patch_embed(self, image: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        embed = self.encoder.patch_embed
        if not self.fusion:
            hidden = embed.proj(image)
        else:
            global_view = embed.proj(image[:, 0:1])
            batch, views, height, width = image[:, 1:].shape
            local = embed.mel_conv2d(image[:, 1:].reshape(batch * views, 1, height, width))
            _, feats, out_h, out_w = local.shape
            local = local.reshape(batch, views, feats, out_h, out_w).permute(0, 2, 3, 1, 4).flatten(3)
            local = F.pad(local, (0, global_view.shape[-1] - local.shape[-1]))
            fused = embed.fusion_model(global_view, local)
            hidden = torch.where(is_longer.reshape(-1, 1, 1, 1), fused, global_view)
        if embed.flatten:
            hidden = hidden.flatten(2).transpose(1, 2)
        return embed.norm(hidden)

    def _mel2img(self, mel: torch.Tensor) -> torch.Tensor:
        """``reshape_mel2img`` with its bicubic time resize as a matrix product (same arithmetic up
        to float rounding: ONNX Runtime's cubic Resize kernel costs ~6 ms per clip, 15 % of the int8
        tower; the (1024 x 1001) product is 0.13 GFLOP)."""
        enc = self.encoder
        batch, channels, frames, bins = mel.shape
        width, ratio = self.time_resize.shape[0], enc.freq_ratio
        if frames != self.time_resize.shape[1] or bins != enc.spec_size // ratio:
            return enc.reshape_mel2img(mel)
        image = torch.matmul(self.time_resize, mel).reshape(batch, channels * ratio, width // ratio, bins)
        return image.permute(0, 1, 3, 2).reshape(batch, channels, bins * ratio, width // ratio)

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        if not self.fusion:
            input_features = input_features[:, :1]
        # BatchNorm over mel bins, then the 1001x64 -> 256x256 "image" (bicubic time resize).
        normalized = enc.batch_norm(input_features.transpose(1, 3)).transpose(1, 3)
        image = self._mel2img(normalized)
        frames = image.shape[2]
        hidden = self._patch_embed(image, is_longer)
        for i, stage in enumerate(enc.layers):
            hidden = stage(hidden, enc.input_resolutions[i], False, False)[0]
        hidden = enc.norm(hidden)
        # Same pooling as ClapAudioEncoder: regroup frequency bins, average every token.
        batch, _, channels = hidden.shape
        down = 2 ** (len(enc.depths) - 1)
        freq, time = frames // down // enc.patch_stride[0], frames // down // enc.patch_stride[1]
        grid = hidden.permute(0, 2, 1).reshape(batch, channels, freq, time)
        c_freq = freq // enc.freq_ratio
        grid = grid.reshape(batch, channels, freq // c_freq, c_freq, time)
        grid = grid.permute(0, 1, 3, 2, 4).reshape(batch, channels, c_freq, -1)
        return grid.flatten(2).mean(dim=-1)
