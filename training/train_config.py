"""Everything a training run needs, as one typed, validated object (saved into every checkpoint).

Give it as JSON (``clap-train train --config run.json``), flags, or ``--set field=value``; unknown
fields are errors, not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time randomness; ``AugmentConfig.off()`` gives exactly the serving features. Also
    ``TrainConfig.augment`` (pydantic validates the dataclass): one definition, no drift."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: bool = True  # master switch: False = serving features
    random_crop: bool = True  # long clips, non-fusion: uniform random crop
    # instead of serving's centre crop
    random_fusion: bool = True  # long clips, fusion: each local chunk starts
    # uniformly in its third (laion_clap), not mid
    normalize_dbfs: float | None = None  # scale each waveform to this RMS (dBFS) first
    gain_db: tuple[float, float] | None = None  # then a uniform random gain in this range
    noise_snr_db: tuple[float, float] | None = None  # added noise at a uniform SNR in this range
    noise_prob: float = 0.0  # probability of adding noise to a clip
    noise_colors: tuple[str, ...] = ("white", "pink")  # noise colour, picked uniformly
    mix_prob: float = 0.0  # probability of mixing in another clip
    mix_ratio: tuple[float, float] = (0.25, 0.5)  # weight of the other clip, uniform in range

    def __post_init__(self) -> None:
        for name in ("noise_prob", "mix_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("gain_db", "noise_snr_db", "mix_ratio"):
            span = getattr(self, name)
            if span is not None and (len(span) != 2 or span[0] > span[1]):
                raise ValueError(f"{name} must be (low, high) with low <= high")
        if not 0.0 <= self.mix_ratio[0] <= self.mix_ratio[1] <= 1.0:
            raise ValueError("mix_ratio must lie in [0, 1]")
        if not self.noise_colors or set(self.noise_colors) - {"white", "pink"}:
            raise ValueError("noise_colors must be a non-empty subset of ('white', 'pink')")

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(enabled=False)

    @property
    def needs_waveform(self) -> bool:
        """Whether clips must be decoded whole to change their samples."""
        noise = self.noise_snr_db is not None and self.noise_prob > 0
        return self.enabled and (
            self.normalize_dbfs is not None or self.gain_db is not None or noise or self.mix_prob > 0
        )


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ---- what to train
    model: str = "micro-cnn-bert"  # registry name (training/model_configs) or JSON path
    init: str | None = None  # whole model: our checkpoint, HF CLAP folder, laion .pt
    audio_init: str | None = None  # audio tower weights, PATH or PATH:PREFIX (models/pretrained.py)
    text_init: str | None = None  # text tower: HF text folder (BERT/RoBERTa/CLIP) or state dict
    tokenizer: str | None = None  # folder with tokenizer.json; default: from the init source,
    # else one is trained on the training captions
    laion_text_config: str | None = None  # --init with a laion .pt: the RoBERTa config.json to use

    # ---- data
    train_manifest: str = ""  # JSONL / CSV / AudioCaps / Clotho / WebDataset shards
    train_split: str | None = None  # keep only records of this split (None: all)
    val_manifest: str | None = None  # evaluated every ``eval_every`` steps; best.pt follows it
    val_split: str | None = None
    on_bad_record: Literal["skip", "fail"] = "skip"  # bad manifest lines / undecodable audio
    probe_audio: bool = False  # open every audio header before training (slow, thorough)
    keyword_prob: float = 0.3  # P(caption from tags) when a record has both
    debias: bool = True  # the paper's gendered-word -> "person" step on captions
    caption_model: str | None = None  # local seq2seq folder (e.g. a T5) that writes captions from
    # tags instead of the templates (training.data.captions)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    workers: int = 2  # DataLoader worker processes (0 = in the main process)

    # ---- optimisation
    seed: int = 0
    batch_size: int = 32  # per process; the contrastive batch is batch_size * world
    grad_accum: int = 1  # micro-batches per optimizer step (negatives stay per micro-batch)
    epochs: int = 10
    max_steps: int | None = None  # overrides epochs when set
    lr: float = 1e-4
    lr_audio: float | None = None  # per-tower learning rates (default: lr)
    lr_text: float | None = None
    lr_heads: float | None = None
    weight_decay: float = 0.2  # not applied to biases, norms and temperatures
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine decays to this fraction of each group's lr
    grad_clip: float | None = 1.0
    freeze_audio: bool = False  # lock a tower (LiT): no gradients, eval-mode norms
    freeze_text: bool = False
    cache_towers: bool = False  # lock the audio tower and train on its cached outputs for
    # ``cache_views`` augmented renderings (cached.py); with
    # freeze_text the text tower is cached too (heads only)
    cache_views: int = 4
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA when supported, else fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # ---- bookkeeping
    out_dir: str = "runs/clap"
    log_every: int = 10
    eval_every: int = 200  # steps; also at the end
    save_every: int = 200  # steps; also at the end; resume continues from here
    select_metric: str = "mean_recall"  # validation number that picks best.pt (higher is better):
    # mean_recall (of R@1/5/10 both ways) or e.g. text_to_audio.mAP@10
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.train_manifest:
            raise ValueError("train_manifest is required")
        if min(self.batch_size, self.grad_accum, self.log_every, self.eval_every, self.save_every) < 1:
            raise ValueError("batch_size, grad_accum, log_every, eval_every and save_every must be >= 1")
        direction, _, name = self.select_metric.partition(".")
        if self.select_metric != "mean_recall" and (
            direction not in ("text_to_audio", "audio_to_text") or name not in ("R@1", "R@5", "R@10", "mAP@10")
        ):
            raise ValueError(
                f"select_metric {self.select_metric!r}: use mean_recall or "
                "{text_to_audio|audio_to_text}.{R@1|R@5|R@10|mAP@10}"
            )
        if self.freeze_audio and self.freeze_text and not self.cache_towers:
            raise ValueError(
                "freezing both towers leaves only the heads: use cache_towers=true for that "
                "(much faster), or fine-tune at least one tower"
            )
        return self

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.out_dir) / "checkpoints"
