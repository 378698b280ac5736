"""Export-ready CLAP towers: the embedding computation, from model input to unit vector.

transformers' ``ClapModel`` is the model definition; these wrappers change only what is wrong for
serving:

* Fusion: ``ClapAudioPatchEmbed`` runs the local branch only on the clips flagged ``is_longer``
  (``torch.where`` + index assignment). Tracing bakes the number of long clips into the graph and
  the dynamo exporter rejects the data-dependent branch. :class:`AudioEmbedder` computes the fused
  path for EVERY clip and selects per clip with ``where``; in eval mode this is the same arithmetic
  per clip, so any mix of long and short clips runs through one graph with a dynamic batch.
* The projection and L2 normalisation live inside the graph, so the runtime gets final vectors.

Shapes: audio ``input_features`` (B, C, T=1001, F=64) float32 (C=4 fusion, 1 otherwise) and
``is_longer`` (B,) bool -> (B, D). Text ``input_ids``/``attention_mask`` (B, L) int64 -> (B, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ClapModel


CLIP_FRAMES = 1001  # STFT frames of one 10 s clip in the LAION front end (480 000 samples, hop 480)


def _resize_matrix(frames: int, width: int) -> torch.Tensor:
    """(width, frames) matrix R with R @ x == interpolate(x, (width, F), bicubic, align_corners=True)."""
    eye = torch.eye(frames).reshape(1, 1, frames, frames)
    with torch.no_grad():
        return F.interpolate(eye, (width, frames), mode="bicubic", align_corners=True)[0, 0].contiguous()


class AudioEmbedder(nn.Module):
    def __init__(self, model: ClapModel):
        super().__init__()
        self.encoder = model.audio_model.audio_encoder
        self.projection = model.audio_projection
        self.fusion = bool(model.config.audio_config.enable_fusion)
        # The bicubic time resize of reshape_mel2img as a constant (width x frames) matrix, for the
        # LAION front end's 1001-frame clips (other lengths fall back to the Resize op).
        width = int(self.encoder.spec_size * self.encoder.freq_ratio)
        self.register_buffer("time_resize", _resize_matrix(CLIP_FRAMES, width), persistent=False)

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
        pooled = grid.flatten(2).mean(dim=-1)
        return F.normalize(self.projection(pooled), dim=-1)


class TextEmbedder(nn.Module):
    def __init__(self, model: ClapModel):
        super().__init__()
        self.text_model = model.text_model
        self.projection = model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(self.projection(pooled), dim=-1)
