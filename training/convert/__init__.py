"""Checkpoint converters: public CLAP weights -> a transformers ``ClapModel`` plus what the
model folder's manifest needs to know about its preprocessing and origin.

``load_laion_checkpoint`` (laion_clap ``.pt``) and ``load_hf_folder`` (Hugging Face CLAP folder)
both return a :class:`ConvertedModel`; ``training.export.write_model_folder`` turns that into a
model folder (manifest + ONNX + tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch stays out of import time
    from transformers import ClapModel

    from indexer.models.manifest import AudioFrontend


@dataclass
class ConvertedModel:
    model: ClapModel  # eval mode, float32, CPU
    frontend: AudioFrontend  # exact preprocessing these weights expect
    audio_architecture: str  # "htsat-tiny", "htsat-base", or "htsat-custom"
    text_architecture: str  # "roberta"
    tokenizer_dir: Path  # folder holding tokenizer.json (or vocab.json + merges.txt)
    max_text_length: int  # 77 for laion checkpoints
    source: str  # path as the user gave it
    source_format: Literal["laion_clap_pt", "hf_clap", "trained", "random"]
    source_sha256: str | None
    notes: list[str] = field(default_factory=list)  # what the converter dropped or inferred
