"""Symmetric contrastive loss (CLIP/CLAP) with a learnable temperature per direction.

For a batch of N matching (audio, text) pairs with unit vectors ``a`` and ``t``:

    logits_a2t = scale_a * a @ t.T        # row i: audio i against every text
    logits_t2a = scale_t * t @ a.T        # row i: text i against every audio
    loss = (CE(logits_a2t, arange(N)) + CE(logits_t2a, arange(N))) / 2

Under DDP every rank contributes its pairs as negatives for everyone: embeddings are gathered
with a differentiable all-gather (``torch.distributed.nn``), each rank computes the loss of its
own rows against the global batch, and DDP's gradient average makes the result equal to the
single-process loss over the global batch (up to float summation order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_global(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows in rank order, differentiable, and the offset of this rank's rows."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x)
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


def contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, scale_a: torch.Tensor, scale_t: torch.Tensor
) -> torch.Tensor:
    """Mean of the audio->text and text->audio cross entropies (see the module docstring)."""
    all_audio, offset = gather_global(audio)
    all_text, _ = gather_global(text)
    targets = torch.arange(offset, offset + audio.shape[0], device=audio.device)
    logits_a2t = scale_a * audio.float() @ all_text.float().T
    logits_t2a = scale_t * text.float() @ all_audio.float().T
    return (F.cross_entropy(logits_a2t, targets) + F.cross_entropy(logits_t2a, targets)) / 2


def batch_accuracy(audio: torch.Tensor, text: torch.Tensor) -> float:
    """Share of local pairs whose own text is the audio's top match (a cheap training signal)."""
    with torch.no_grad():
        return float(
            (audio @ text.T).argmax(dim=1).eq(torch.arange(audio.shape[0], device=audio.device)).float().mean()
        )


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to
    ``min_ratio * base_lr`` at ``total_steps`` (held there after). ``step`` counts optimizer steps
    from 0; a pure function, so a resumed run recomputes the exact same rate."""
    import math

    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
