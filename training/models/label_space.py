"""Label-space heads: a tagger's class scores as a shared audio-text space, plus a trained branch.

Why: an AudioSet-trained tagger (YAMNet) already knows 521 everyday sound classes; a sentence
encoder (MiniLM) knows how a query relates to their names. Meeting in the LABEL space needs no
paired training data at all:

    audio  a = L2(mean over patches of sigmoid(class logits))                      (521)
    text   t = L2(softmax(cos(enc(query), enc(template % label_k)) / temperature))  (521)

That prior is the floor. A trained branch adds what the labels cannot say (two MLPs into a small
space, learned contrastively on our corpus). The final vector concatenates the blocks scaled by
the square roots of their weights, so the cosine of two vectors is ``w * cos_prior + (1 - w) *
cos_branch`` and every vector stays unit length:

    audio  [sqrt(w) * a, sqrt(1 - w) * L2(mlp_a(pooled tower output))]
    text   [sqrt(w) * t, sqrt(1 - w) * L2(mlp_t(enc(query)))]

Both heads are ordinary ``nn.Module`` projection heads of :class:`~training.models.clap.ClapTrainModel`
(``audio_projection`` / ``text_projection``): training, checkpoints and the ONNX export treat
them like the MLP heads; the anchor matrix is a fixed buffer, so it ends up inside the text graph.

Shapes: audio head ``(B, tower_width)`` with the class scores in the LAST ``num_classes`` columns
(YAMNet tower: ``[embedding 1024 | scores 521]``) -> ``(B, D)``; text head ``(B, text_width)`` ->
``(B, D)``; ``D = num_classes + branch_dim``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _branch(width: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, dim), nn.ReLU(), nn.Linear(dim, dim))


class LabelSpaceAudioHead(nn.Module):
    def __init__(self, width: int, num_classes: int, prior_weight: float, branch_dim: int):
        super().__init__()
        if not 0.0 <= prior_weight <= 1.0:
            raise ValueError("prior_weight must be in [0, 1]")
        self.num_classes = num_classes
        self.prior_weight = prior_weight
        self.branch = _branch(width, branch_dim) if branch_dim else None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        prior = F.normalize(pooled[:, -self.num_classes :], dim=-1)
        parts = [math.sqrt(self.prior_weight) * prior]
        if self.branch is not None:
            parts.append(math.sqrt(1.0 - self.prior_weight) * F.normalize(self.branch(pooled), dim=-1))
        return torch.cat(parts, dim=-1)


class LabelSpaceTextHead(nn.Module):
    """``anchors``: (num_classes, text_width) unit embeddings of the filled template, fixed."""

    def __init__(self, anchors: torch.Tensor, temperature: float, prior_weight: float, branch_dim: int):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.register_buffer("anchors", F.normalize(anchors.float(), dim=-1))
        self.temperature = temperature
        self.prior_weight = prior_weight
        width = anchors.shape[1]
        self.branch = _branch(width, branch_dim) if branch_dim else None

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(embedding, dim=-1)
        prior = F.normalize(torch.softmax(unit @ self.anchors.T / self.temperature, dim=-1), dim=-1)
        parts = [math.sqrt(self.prior_weight) * prior]
        if self.branch is not None:
            parts.append(math.sqrt(1.0 - self.prior_weight) * F.normalize(self.branch(embedding), dim=-1))
        return torch.cat(parts, dim=-1)


def embed_dim(num_classes: int, prior_weight: float, branch_dim: int) -> int:
    """The block sizes do not depend on the weight: a weight of 0 or 1 zeroes a block, so one
    trained checkpoint can be exported at any mix of prior and branch."""
    return num_classes + branch_dim
