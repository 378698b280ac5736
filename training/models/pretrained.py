"""Initialise towers from pretrained weights on disk (no hub): the ``--init``/``--audio-init``/
``--text-init`` flags of ``clap-train train``.

Accepted sources (``PATH`` or ``PATH:PREFIX`` for a plain state dict whose tower keys sit under a
prefix, e.g. ``checkpoint.pth:embedding_net.`` for the ``aisfx`` CNN):

| source                          | --init (whole model) | --audio-init | --text-init |
|---------------------------------|----------------------|--------------|-------------|
| our training checkpoint (.pt)   | yes                  | audio tower  | text tower  |
| Hugging Face CLAP folder        | yes                  | HTSAT tower  | RoBERTa     |
| laion_clap checkpoint (.pt)     | yes                  | HTSAT tower  | RoBERTa     |
| HF text model folder (BERT/...) | no                   | no           | yes         |
| plain state dict (.pt/.pth/.bin/.safetensors) | no     | yes          | yes         |

A plain state dict is loaded into the tower by name; shapes must match, every tower tensor should
be covered, and the report says which were missing or unused: a silent partial load is how
models quietly train from noise.
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
    missing: list[str] = field(default_factory=list)      # tower tensors left at their init
    unexpected: list[str] = field(default_factory=list)   # source tensors nobody used

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
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in tensors.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise ModelError(f"{source}: shape mismatch for {len(bad)} tensors, e.g. {bad[:3]}")
    usable = {k: v for k, v in tensors.items() if k in own}
    if not usable:
        raise ModelError(f"{source}: none of its {len(tensors)} tensors match this tower "
                         f"(its keys look like {list(tensors)[:3]}, the tower's like {list(own)[:3]}; "
                         "give PATH:PREFIX to strip a prefix)")
    result = module.load_state_dict(usable, strict=False)
    return LoadReport(source, len(usable), missing=[k for k in result.missing_keys if not k.endswith("num_batches_tracked")],
                      unexpected=sorted(set(tensors) - set(usable)))


def clap_from_source(path: Path, *, tokenizer_dir: Path | None = None, text_config: Path | None = None):
    """(ClapTrainModel, tokenizer_dir or None) for a whole-model source: our checkpoint, an HF
    CLAP folder or a laion_clap ``.pt``."""
    from training.models.clap import from_hf_clap

    if path.is_dir():
        from training.convert.hf import load_hf_folder

        converted = load_hf_folder(path)
        return _with_frontend(from_hf_clap(converted.model, converted.max_text_length), converted), \
            converted.tokenizer_dir
    from training.checkpoint import is_training_checkpoint, model_from_checkpoint

    if is_training_checkpoint(path):
        return model_from_checkpoint(path), None
    from training.convert.laion import load_laion_checkpoint

    if tokenizer_dir is None:
        raise ModelError(f"{path}: a laion_clap checkpoint needs --tokenizer (its RoBERTa tokenizer folder)")
    converted = load_laion_checkpoint(path, text_config=text_config, tokenizer_dir=tokenizer_dir)
    return _with_frontend(from_hf_clap(converted.model, converted.max_text_length), converted), \
        converted.tokenizer_dir


def _with_frontend(model, converted):
    """Keep the checkpoint's exact preprocessing (e.g. laion's int16 round trip) in the config, so
    fine-tuning sees the features the weights were trained on, and the export records them."""
    model.config = model.config.model_copy(update={"frontend": converted.frontend.model_dump()})
    return model


def init_tower(model, tower: str, spec: str, **clap_kwargs) -> LoadReport:
    """Load ``model.audio`` or ``model.text`` from ``spec`` (see the module table)."""
    path, prefix = split_spec(spec)
    target = getattr(model, tower)
    if tower == "audio" and path.suffix == ".tflite":  # YAMNet's TFLite file, dequantized
        from training.convert.yamnet import yamnet_state_dict

        net = getattr(target, "net", None)
        if net is None:
            raise ModelError(f"{path}: a TFLite tagger initialises a yamnet audio tower, not {type(target).__name__}")
        return load_into(net, yamnet_state_dict(path), str(path))
    if tower == "text" and path.is_dir() and (path / "config.json").is_file() and not _is_clap_folder(path):
        from training.models.text import TextTower

        replacement = TextTower.from_pretrained(path, pooling=model.config.text.pooling)
        model.replace_text_tower(replacement)
        return LoadReport(str(path), len(replacement.state_dict()))
    if path.is_dir() or (path.suffix in (".pt", ".ckpt") and not prefix and _looks_whole(path)):
        source, _ = clap_from_source(path, **clap_kwargs)
        tensors = getattr(source, tower).state_dict()
        return load_into(target, tensors, str(path))
    return load_into(target, read_state_dict(path), str(path), prefix)


def _is_clap_folder(path: Path) -> bool:
    import json

    return json.loads((path / "config.json").read_text()).get("model_type") == "clap"


def _looks_whole(path: Path) -> bool:
    from training.checkpoint import is_training_checkpoint

    if is_training_checkpoint(path):
        return True
    keys = read_state_dict(path).keys()
    return any(k.startswith(("audio_branch.", "text_branch.")) for k in keys)
