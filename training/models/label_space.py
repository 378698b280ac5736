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

Audio -> audio search (query by example) is better served by the tower's own embedding than by
class scores (same-label nearest neighbour on held-out packages: 50.5 % against 46.7 %), so the
AUDIO vector may carry a third block: the tower embedding, centred and projected on its first
``embedding_dim`` principal axes (fitted on the training split), where the text vector has zeros.
With audio-to-audio share ``e``, the blocks get ``(1 - e) * w``, ``(1 - e) * (1 - w)`` and ``e``:
an audio query compares all three blocks, and a text query's ranking is unchanged (every text
cosine is scaled by the same ``sqrt(1 - e)``). One vector per file serves both searches.

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
    def __init__(
        self,
        width: int,
        num_classes: int,
        prior_weight: float,
        branch_dim: int,
        embedding_dim: int = 0,
        embedding_weight: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= prior_weight <= 1.0 or not 0.0 <= embedding_weight < 1.0:
            raise ValueError("prior_weight must be in [0, 1] and embedding_weight in [0, 1)")
        self.num_classes = num_classes
        self.prior_weight = prior_weight
        self.embedding_weight = embedding_weight
        self.branch = _branch(width, branch_dim) if branch_dim else None
        # The embedding block: (x[:E] - mean) @ basis.T, E = width - num_classes; set by fitting.
        # Registered only when present, so checkpoints without the block load as they are.
        if embedding_dim:
            self.register_buffer("embedding_mean", torch.zeros(width - num_classes))
            self.register_buffer("embedding_basis", torch.zeros(embedding_dim, width - num_classes))
        else:
            self.embedding_mean: torch.Tensor | None = None
            self.embedding_basis: torch.Tensor | None = None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.embedding_weight
        prior = F.normalize(pooled[:, -self.num_classes :], dim=-1)
        parts = [math.sqrt(keep * self.prior_weight) * prior]
        if self.branch is not None:
            parts.append(math.sqrt(keep * (1.0 - self.prior_weight)) * F.normalize(self.branch(pooled), dim=-1))
        if self.embedding_basis is not None and self.embedding_mean is not None:
            centred = pooled[:, : -self.num_classes] - self.embedding_mean
            parts.append(math.sqrt(self.embedding_weight) * F.normalize(centred @ self.embedding_basis.T, dim=-1))
        return torch.cat(parts, dim=-1)

    def fit_embedding_block(self, embeddings: torch.Tensor, dim: int, weight: float) -> None:
        """Principal axes of ``embeddings`` ``(N, E)`` (the training split's pooled tower
        embeddings) become the embedding block; ``weight`` its audio-to-audio share."""
        mean = embeddings.double().mean(dim=0)
        _, _, vt = torch.linalg.svd(embeddings.double() - mean, full_matrices=False)
        # Fix each axis' sign (largest |loading| positive): SVD signs are arbitrary across LAPACKs.
        vt = vt[:dim] * torch.sign(vt[:dim].gather(1, vt[:dim].abs().argmax(dim=1, keepdim=True)))
        for name, value in (("embedding_mean", mean.float()), ("embedding_basis", vt.float().contiguous())):
            if name not in self._buffers:
                delattr(self, name)  # the plain ``None`` attribute set in __init__
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)
        self.embedding_weight = weight


class LabelSpaceTextHead(nn.Module):
    """``anchors``: (num_classes, text_width) unit embeddings of the filled template, fixed."""

    def __init__(
        self, anchors: torch.Tensor, temperature: float, prior_weight: float, branch_dim: int, embedding_dim: int = 0
    ):
        super().__init__()
        self.embedding_dim = embedding_dim  # zeros: text has no part in the audio-only block
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
        if self.embedding_dim:
            parts.append(unit.new_zeros(unit.shape[0], self.embedding_dim))
        return torch.cat(parts, dim=-1)


def embed_dim(num_classes: int, prior_weight: float, branch_dim: int, embedding_dim: int = 0) -> int:
    """The block sizes do not depend on the weights: a weight of 0 or 1 zeroes a block, so one
    trained checkpoint can be exported at any mix of prior and branch."""
    return num_classes + branch_dim + embedding_dim
