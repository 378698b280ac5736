"""Pretrained weights on disk (no hub) into one tower: the state-dict side of
``training.models.factory.init_tower`` (``--audio-init`` / ``--text-init``).

A source is ``PATH`` or ``PATH:PREFIX`` for a plain state dict whose tower keys sit under a
prefix, e.g. ``checkpoint.pth:embedding_net.`` for the ``aisfx`` CNN. Tensors load into the tower
by name; shapes must match, every tower tensor should be covered, and the report says which were
missing or unused: a silent partial load is how models quietly train from noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from indexer.errors import ModelError


@dataclass
class LoadReport:
    source: str
    loaded: int
    missing: list[str] = field(default_factory=list)  # tower tensors left at their init
    unexpected: list[str] = field(default_factory=list)  # source tensors nobody used

    def summary(self) -> str:
        text = f"{self.source}: loaded {self.loaded} tensors"
        if self.missing:
            text += f"; {len(self.missing)} left at init (e.g. {', '.join(self.missing[:3])})"
        if self.unexpected:
            text += f"; {len(self.unexpected)} unused (e.g. {', '.join(self.unexpected[:3])})"
        return text


def split_spec(spec: str) -> tuple[Path, str]:
    """``path`` or ``path:prefix`` (a Windows drive letter is not a prefix)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and not Path(spec).exists() and len(head) > 1:
        return Path(head), tail
    return Path(spec), ""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a plain checkpoint; unwraps ``{"state_dict": ...}``, ``{"model": ...}`` and the
    ``(state_dict, extra)`` tuples some projects save."""
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=False)  # local files the user named
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], dict):
        obj = obj[0]
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: not a state dict (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], source: str, prefix: str = "") -> LoadReport:
    """Copy ``tensors`` (keys under ``prefix``) into ``module`` by name; shapes must match."""
    if prefix:
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    bad = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        raise ModelError(f"{source}: shape mismatch for {len(bad)} tensors, e.g. {bad[:3]}")
    usable = {k: v for k, v in tensors.items() if k in own}
    if not usable:
        raise ModelError(
            f"{source}: none of its {len(tensors)} tensors match this tower "
            f"(its keys look like {list(tensors)[:3]}, the tower's like {list(own)[:3]}; "
            "give PATH:PREFIX to strip a prefix)"
        )
    result = module.load_state_dict(usable, strict=False)
    return LoadReport(
        source,
        len(usable),
        missing=[k for k in result.missing_keys if not k.endswith("num_batches_tracked")],
        unexpected=sorted(set(tensors) - set(usable)),
    )
