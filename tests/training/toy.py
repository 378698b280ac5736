"""A toy captioned corpus where text and audio are related: four kinds of generated sound, each
with its own wording, and a tiny model config with a small front end so training runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
KINDS = {
    "hum": ["a low electrical hum", "a deep steady drone"],
    "beep": ["a high pitched beep", "a shrill electronic tone"],
    "hiss": ["white noise hissing", "a loud static hiss"],
    "clicks": ["rapid clicking sounds", "a series of sharp clicks"],
}
TOY_CONFIG = {
    "description": "toy CNN + BERT with a 1 s, 16 kHz front end",
    "embed_dim": 32,
    "audio": {"type": "cnn", "preset": "cnn10", "fusion": False, "widths": [8, 16, 32, 32]},
    "text": {
        "type": "bert",
        "pooling": "mean",
        "max_length": 16,
        "config": {
            "vocab_size": 256,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
            "pad_token_id": 0,
        },
    },
    "frontend": {
        "sample_rate": SR,
        "clip_samples": SR,
        "n_fft": 512,
        "win_length": 512,
        "hop_length": 160,
        "n_mels": 32,
        "f_max": 8000,
    },
    "tokenizer_vocab_size": 256,
}


def sound(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "hum":
        y = np.sin(2 * np.pi * rng.uniform(60, 180) * t)
    elif kind == "beep":
        y = np.sin(2 * np.pi * rng.uniform(2500, 5000) * t)
    elif kind == "hiss":
        y = rng.standard_normal(t.size)
    else:
        y = np.zeros(t.size)
        y[rng.integers(0, t.size, size=int(25 * seconds))] = 1.0
    return (0.3 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def write_corpus(
    folder: Path, per_kind: int = 8, seed: int = 0, split: str = "train", name: str = "train.jsonl"
) -> Path:
    """``per_kind`` clips of every kind (0.6 to 1.8 s) and a JSONL manifest listing them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for kind, captions in KINDS.items():
        for i in range(per_kind):
            path = folder / f"{split}-{kind}-{i}.wav"
            sf.write(path, sound(kind, rng, rng.uniform(0.6, 1.8)), SR)
            lines.append({"audio": path.name, "captions": captions, "labels": [kind], "split": split})
    manifest = folder / name
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def write_config(folder: Path, **overrides) -> Path:
    path = folder / "toy-config.json"
    path.write_text(json.dumps({**TOY_CONFIG, **overrides}))
    return path
