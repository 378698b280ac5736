"""The one door to a torch CLAP model (open_clip's ``create_model`` / ``list_models`` /
``list_pretrained``): training, export, evaluation, tests and benchmarks all come in here.

    create_model("cnn10-minilm", seed=0)                     # random weights of a registry config
    create_model(pretrained="runs/x/checkpoints/best.pt")    # our checkpoint (path or loaded payload)
    create_model(pretrained="clap-htsat-unfused/")           # a Hugging Face CLAP folder
    create_model("htsat-tiny-roberta", pretrained="630k-audioset-best.pt", tokenizer="roberta-base/")
    create_model(pretrained=clap_model)                      # a transformers ClapModel, wrapped, no copy
    init_tower(model, "audio", "aisfx.pth:embedding_net.")   # one tower: our checkpoint, HF CLAP folder,
    init_tower(model, "text", "minilm/")                     # laion .pt, HF text folder, YAMNet .tflite,
                                                             # or a plain state dict (PATH:PREFIX)

Whole-model sources carry their own architecture. A file or folder named like a known public
checkpoint (``pretrained.json``) is checked against the table's sha256 where it pins one, and a
``name`` given alongside must be the config the table expects: a base checkpoint loaded into a tiny
model is the classic size mismatch, caught before any tensor. Nothing is downloaded. The model's
``tokenizer_dir`` names the tokenizer that came with the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from indexer.errors import ModelError
from indexer.models.manifest import sha256_file
from training.checkpoint import is_training_checkpoint, load_checkpoint
from training.models.clap import ClapTrainModel, build_model, from_hf_clap
from training.models.config import ModelConfig, list_configs, pretrained_table
from training.models.pretrained import LoadReport, load_into, read_state_dict, split_spec


def list_models() -> list[str]:
    """Registry config names (``training/model_configs``)."""
    return list_configs()


def list_pretrained() -> list[tuple[str, str]]:
    """(config, weights) pairs of the known public checkpoints and towers, like open_clip's."""
    return [(entry["model"], name) for name, entry in pretrained_table().items()]


def create_model(
    name: ModelConfig | str | Path | dict | None = None,
    pretrained: str | Path | dict | nn.Module | None = None,
    *,
    seed: int | None = 0,
    tokenizer: str | Path | None = None,
    text_config: str | Path | None = None,
    max_text_length: int = 77,
) -> ClapTrainModel:
    """A :class:`ClapTrainModel`: ``name``'s architecture with fresh weights (``seed``), or the
    whole model ``pretrained`` names (see the module docstring). ``tokenizer`` and ``text_config``
    complete a laion_clap ``.pt`` (it carries neither); ``max_text_length`` a transformers model."""
    if pretrained is None:
        if name is None:
            raise ModelError("create_model needs a config name or pretrained weights")
        return build_model(name, seed=seed)
    if isinstance(pretrained, dict):  # a loaded training checkpoint (resume)
        model = build_model(ModelConfig.model_validate_json(pretrained["model_config"]), seed=None)
        model.load_state_dict(pretrained["model"])
        return model.eval()
    if isinstance(pretrained, nn.Module):
        if isinstance(pretrained, ClapTrainModel):
            return pretrained
        from transformers import ClapModel

        if isinstance(pretrained, ClapModel):
            return from_hf_clap(pretrained, max_text_length)
        raise TypeError(f"expected ClapTrainModel or transformers ClapModel, got {type(pretrained).__name__}")
    path = Path(pretrained)
    check_known(path, name)
    if path.is_dir():
        from training.convert.hf import load_hf_folder

        return _with_source(load_hf_folder(path))
    if is_training_checkpoint(path):
        return create_model(pretrained=load_checkpoint(path))
    from training.convert.laion import load_laion_checkpoint

    if tokenizer is None:
        raise ModelError(f"{path}: a laion_clap checkpoint needs --tokenizer (its RoBERTa tokenizer folder)")
    return _with_source(load_laion_checkpoint(path, text_config=text_config, tokenizer_dir=tokenizer))


def check_known(path: Path, name) -> None:
    """A known public checkpoint must be the published file and meet the config it was made for."""
    for known, entry in pretrained_table().items():
        if entry["kind"] != "clap" or entry["file"] != path.name:
            continue
        if isinstance(name, str) and name != entry["model"]:
            raise ModelError(f"{path}: {known} is a {entry['model']} checkpoint, not {name}")
        if entry["sha256"] and path.is_file() and sha256_file(path) != entry["sha256"]:
            raise ModelError(f"{path}: not the published {known} (sha256 differs from {entry['sha256']})")


def _with_source(converted) -> ClapTrainModel:
    """The converted model, keeping the checkpoint's exact preprocessing (e.g. laion's int16 round
    trip) in the config, so fine-tuning sees the features the weights were trained on and the
    export records them; and the tokenizer that came with it."""
    model = from_hf_clap(converted.model, converted.max_text_length)
    model.config = model.config.model_copy(update={"frontend": converted.frontend.model_dump()})
    model.tokenizer_dir = Path(converted.tokenizer_dir)
    return model


def init_tower(model: ClapTrainModel, tower: str, spec: str, **clap_kwargs) -> LoadReport:
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
        source = create_model(pretrained=path, **clap_kwargs)
        return load_into(target, getattr(source, tower).state_dict(), str(path))
    return load_into(target, read_state_dict(path), str(path), prefix)


def _is_clap_folder(path: Path) -> bool:
    return json.loads((path / "config.json").read_text()).get("model_type") == "clap"


def _looks_whole(path: Path) -> bool:
    if is_training_checkpoint(path):
        return True
    return any(k.startswith(("audio_branch.", "text_branch.")) for k in read_state_dict(path))
