"""Export-ready CLAP towers: the embedding computation, from model input to unit vector.

``AudioEmbedder(model)`` and ``TextEmbedder(model)`` accept a trainable
:class:`~training.models.clap.ClapTrainModel` or a transformers ``ClapModel`` (what the checkpoint
converters return; it is wrapped without copying) and run ``encode_audio`` / ``encode_text``: the
exact forward used in training, projection and L2 normalisation included, so the runtime gets
final vectors.

Shapes: audio ``input_features`` (B, C, T, F) float32 (C=4 fusion, 1 otherwise) and
``is_longer`` (B,) bool -> (B, D). Text ``input_ids``/``attention_mask`` (B, L) int64 -> (B, D).
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.factory import create_model


class AudioEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = create_model(pretrained=model)

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        return self.model.encode_audio(input_features, is_longer)


class TextEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = create_model(pretrained=model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)
