"""Model configs: the open_clip-style registry of CLAP architectures.

A config is a JSON file in ``training/model_configs`` (or any path) naming an audio tower, a text
tower and the shared space; any audio tower goes with any text tower::

    {
      "description": "PANN CNN10 + MiniLM-style BERT, 512-d space",
      "embed_dim": 512,
      "audio": {"type": "cnn", "preset": "cnn10", "fusion": false},
      "text": {"type": "bert", "config": {"hidden_size": 384, "num_hidden_layers": 6, ...},
               "pooling": "mean"},
      "frontend": {"sample_rate": 32000, "hop_length": 320}     # AudioFrontend overrides
    }

``audio.type``: ``htsat`` (transformers' CLAP audio encoder, ``config`` = ``ClapAudioConfig``
fields) or ``cnn`` (our PANN-family CNN, :mod:`training.models.audio_cnn`). ``text.type``:
``roberta``, ``bert`` or ``clip`` (``config`` = that transformers config's fields). The audio
front end defaults to the LAION numbers (48 kHz, 10 s, 64 mels, hop 480); ``frontend`` overrides
them and ends up, unchanged, in the exported model's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.errors import ModelError
from indexer.models.manifest import AudioFrontend

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HtsatAudioConfig(_Strict):
    type: Literal["htsat"] = "htsat"
    fusion: bool = False
    config: dict = Field(default_factory=dict, description="transformers ClapAudioConfig fields")


class CnnAudioConfig(_Strict):
    """A PANN-family CNN. ``preset`` fills every field not given explicitly."""

    type: Literal["cnn"] = "cnn"
    preset: Literal["cnn6", "cnn10", "cnn14", "cnn9-max"] | None = None
    fusion: bool = False
    widths: list[int] | None = None  # channels per conv block
    convs_per_block: int | None = None  # 2 (CNN10/14: two 3x3 convs) or 1 (CNN6: one 5x5)
    kernel_size: int | None = None
    pool_type: Literal["avg", "max"] | None = None  # 2x2 pooling after every block but the last
    input_norm: bool | None = None  # BatchNorm over mel bins before the first block
    head: Literal["pann", "max"] | None = None  # pann: max+mean over time, then fc; max: max over time
    embed_width: int | None = None  # width of the pann head's fc (default: last block's)
    dropout: float | None = None


class YamnetAudioConfig(_Strict):
    """YAMNet's MobileNetV1 (AudioSet, 521 classes) on 0.96 s patches; a clip's output is the mean
    over its patches of ``[embedding 1024 | class scores 521]`` (:mod:`training.models.audio_yamnet`)."""

    type: Literal["yamnet"] = "yamnet"
    fusion: Literal[False] = False


class LabelSpaceHeadConfig(_Strict):
    """Heads that meet in the tagger's label space (:mod:`training.models.label_space`)."""

    type: Literal["label_space"] = "label_space"
    labels_file: str = "yamnet_class_map.csv"  # index,mid,display_name; relative to model_configs/
    template: str = "This is a sound of {}."  # anchor prompt per label
    temperature: float = 0.02  # softmax temperature over the anchor cosines
    prior_weight: float = 1.0  # share of the cosine given to the label-space prior
    branch_dim: int = 0  # trained branch width (0 = prior only)
    embedding_dim: int = 0  # audio-only block: principal axes of the tower embedding
    embedding_weight: float = 0.0  # its share of audio->audio cosines
    # text->audio cosine -> relevance: {"slope", "intercept", "fitted_on", "auc"} (clap-train label-space)
    calibration: dict | None = None

    def labels(self) -> list[str]:
        import csv

        path = Path(self.labels_file)
        path = path if path.is_absolute() else CONFIG_DIR / path
        with open(path, newline="") as fh:
            return [row["display_name"] for row in csv.DictReader(fh)]


class TextConfig(_Strict):
    type: Literal["roberta", "bert", "clip"] = "roberta"
    config: dict = Field(default_factory=dict, description="transformers config fields")
    # pooler: the model's pooler output (tanh on the first token; laion's RoBERTa). mean: mean over
    # real tokens (sentence encoders). cls: first token. last: last real token (CLIP's EOS).
    pooling: Literal["pooler", "mean", "cls", "last"] | None = None
    max_length: int = 77

    @property
    def resolved_pooling(self) -> str:
        return self.pooling or {"roberta": "pooler", "bert": "mean", "clip": "last"}[self.type]


class ModelConfig(_Strict):
    description: str = ""
    embed_dim: int = 512
    audio: Annotated[HtsatAudioConfig | CnnAudioConfig | YamnetAudioConfig, Field(discriminator="type")]
    text: TextConfig
    frontend: dict = Field(default_factory=dict, description="AudioFrontend overrides")
    # None: projection MLPs into ``embed_dim``; label_space: see LabelSpaceHeadConfig.
    head: LabelSpaceHeadConfig | None = None
    logit_scale_init: float = 1 / 0.07  # CLIP's initial temperature
    tokenizer_vocab_size: int = 2048  # for a tokenizer trained from scratch (random init)

    @property
    def fusion(self) -> bool:
        return self.audio.fusion

    def audio_frontend(self) -> AudioFrontend:
        defaults = {"long_policy": "fusion" if self.fusion else "center_crop"}
        if self.audio.type == "yamnet":
            defaults = dict(YAMNET_FRONTEND)
        try:
            return AudioFrontend(**{**defaults, **self.frontend})
        except ValidationError as exc:
            raise ModelError(f"invalid frontend overrides {self.frontend}: {exc}") from exc


# What YAMNet's weights expect (its SOURCE.md): 16 kHz; 25 ms periodic Hann at the start of a
# 512-point frame every 10 ms; magnitude; 64 HTK mel bands 125-7500 Hz drawn on the mel axis, no
# normalisation; ln(mel + 0.001); 96-frame patches every 48 frames. Training crops 10 patches.
YAMNET_FRONTEND = dict(
    sample_rate=16_000,
    clip_samples=15_600 + 9 * 7_680,
    n_fft=512,
    win_length=400,
    hop_length=160,
    window_align="left",
    center=False,
    pad_mode="constant",
    power=1.0,
    n_mels=64,
    f_min=125.0,
    f_max=7_500.0,
    mel_scale="htk",
    mel_norm=None,
    mel_triangles="mel",
    log={"kind": "ln_eps", "amin": 0.001},
    short_policy="zeropad",
    long_policy="patch_mean",
    patch_frames=96,
    patch_hop_frames=48,
)


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def pretrained_table() -> dict[str, dict]:
    """Known public checkpoints and towers by name (``pretrained.json`` beside this module): kind
    (clap / audio / text), format, published file name, matching registry config, source, sha256."""
    table = json.loads(Path(__file__).with_name("pretrained.json").read_text())
    return {name: entry for name, entry in table.items() if not name.startswith("_")}


def load_config(name_or_path: str | Path | dict) -> ModelConfig:
    """A registry name (``cnn10-minilm``), a JSON path, or an already parsed dict."""
    if isinstance(name_or_path, dict):
        raw = name_or_path
        where = "config dict"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            path = CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ModelError(f"unknown model config {name_or_path!r}; known: {', '.join(list_configs())}")
        raw, where = json.loads(path.read_text()), str(path)
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{where}: invalid model config: {exc}") from exc
