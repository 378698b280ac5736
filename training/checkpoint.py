"""Training checkpoints: self-describing, atomic, resumable bit for bit.

A checkpoint is one ``torch.save`` file holding only tensors, numbers and strings (it loads with
``weights_only=True``, so opening one never runs code):

    format            "clapsearch-train-v1"
    model_config      the ModelConfig as JSON (rebuilds the architecture without the registry)
    tokenizer_json    the tokenizer.json text (the model's text input is part of the model)
    model             state dict
    optimizer, scaler optimizer / GradScaler state
    state             TrainState as a dict: step, epoch, position, best metric...
    rng               torch CPU (and CUDA) generator states at the moment of saving
    train_config      the TrainConfig as JSON, for the record

Writes go to a temporary file in the same folder, are fsynced, then renamed over the old file: a
kill -9 at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from indexer.errors import ModelError

FORMAT = "clapsearch-train-v1"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch
    position: int = 0  # items of this epoch already consumed (per rank)
    samples_seen: int = 0  # pairs trained on, all ranks
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)  # evaluation results by step


def save_checkpoint(
    path: Path,
    *,
    model,
    model_config_json: str,
    tokenizer_json: str,
    state: TrainState,
    optimizer=None,
    scaler=None,
    train_config_json: str = "{}",
) -> Path:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    payload = {
        "format": FORMAT,
        "model_config": model_config_json,
        "tokenizer_json": tokenizer_json,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "state": json.dumps(asdict(state)),
        "rng": rng,
        "train_config": train_config_json,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, or not a checkpoint of ours at all
        raise ModelError(f"{path}: cannot read checkpoint: {exc}".splitlines()[0]) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a clapsearch training checkpoint")
    payload["state"] = TrainState(**json.loads(payload["state"]))
    return payload


def is_training_checkpoint(path: str | Path) -> bool:
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def restore_rng(payload: dict) -> None:
    torch.set_rng_state(payload["rng"]["cpu"])
    if "cuda" in payload["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
