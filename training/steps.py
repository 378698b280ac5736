"""What one optimizer step of ``training.train.train`` computes, per training mode.

The loop owns what every mode shares (schedule, optimizer step, clipping, logging, validation,
best-metric selection, checkpoints). A step object has ``steps_per_epoch``, ``resumable`` (can a
mid-run ``last.pt`` be continued from), ``summary``, ``step(state)`` (backpropagates one optimizer
step; returns ``{"loss", "acc", "clips", "wait"}``, or None when the epoch ran dry) and
``validate()``. :class:`TowerStep` runs the towers on decoded audio (DDP included);
``training.cached.CachedStep`` trains on cached tower outputs.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

import numpy as np
import torch

from training.checkpoint import TrainState
from training.loss import batch_accuracy, contrastive_loss
from training.train_config import AugmentConfig, TrainConfig

log = logging.getLogger("clap-train")


# ----------------------------------------------------------------------------- data
def read_records(path: str, split: str | None, cfg: TrainConfig, what: str):
    from training.data.readers import read_any, summarize

    records, issues = read_any(path, on_error=cfg.on_bad_record, probe_audio=cfg.probe_audio)
    if issues:
        log.warning("%s manifest %s: %d bad records skipped\n%s", what, path, len(issues), summarize(issues))
    if split is not None:
        records = [r for r in records if r.split == split]
    if not records:
        raise ValueError(f"{what} manifest {path}: no usable records" + (f" in split {split!r}" if split else ""))
    return records


def make_dataset(records, model, cfg: TrainConfig, *, train: bool):
    from training.data.captions import CaptionPolicy
    from training.data.dataset import ClapDataset

    augment = cfg.augment if train and cfg.augment.enabled else AugmentConfig.off()
    generator = None
    if train and cfg.caption_model:
        from training.data.captions import Seq2SeqCaptioner

        generator = Seq2SeqCaptioner(cfg.caption_model)
    policy = (
        CaptionPolicy(keyword_prob=cfg.keyword_prob, debias=cfg.debias, generator=generator)
        if train
        else CaptionPolicy(random_caption=False, random_template=False, debias=False)
    )
    return ClapDataset(
        records,
        model.config.audio_frontend(),
        caption_policy=policy,
        augment=augment,
        seed=cfg.seed,
        on_error=cfg.on_bad_record,
    )


def as_list(items: list) -> list:
    """A picklable identity collate (spawned workers must pickle it)."""
    return items


def audio_batch(items: list[dict], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, is_longer) of a list of dataset items, on ``device``."""
    from training.data.dataset import stack_features

    features = stack_features([it["features"] for it in items]).to(device)
    return features, torch.stack([torch.as_tensor(it["is_longer"]) for it in items]).to(device)


# ----------------------------------------------------------------------------- validation
def validation_texts(records) -> tuple[list[str], list[int]]:
    """Every caption of every validation clip (a fixed keyword caption for clips with only tags),
    and the clip each belongs to: the retrieval queries of both training modes."""
    from training.data.captions import keywords_to_caption

    texts, owner = [], []
    for i, record in enumerate(records):
        for caption in record.captions or (keywords_to_caption(record.tags),):
            texts.append(caption)
            owner.append(i)
    return texts, owner


def score(audio: np.ndarray, text: np.ndarray, owner) -> dict:
    """Retrieval metrics both ways, plus ``mean_recall`` (of R@1/5/10 both ways), the default
    number that picks ``best.pt``."""
    from training.metrics import retrieval_metrics

    result = retrieval_metrics(audio, text, np.asarray(owner))
    result["mean_recall"] = float(
        np.mean([result[d][f"R@{k}"] for d in ("text_to_audio", "audio_to_text") for k in (1, 5, 10)])
    )
    return result


def validate(model, records, cfg: TrainConfig, device, tokenizer) -> dict:
    """Retrieval metrics on the validation records, with serving features (no augmentation)."""
    from torch.utils.data import DataLoader

    data = make_dataset(records, model, cfg, train=False)
    captions, owner = validation_texts(records)
    was_training = model.training
    model.eval()
    audio, text = [], []
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers, collate_fn=as_list)
    with torch.inference_mode():
        for items in loader:  # decoding in the workers, in order
            audio.append(model.encode_audio(*audio_batch(items, device)).float().cpu().numpy())
        for start in range(0, len(captions), cfg.batch_size):
            ids, mask = tokenizer.encode_batch(captions[start : start + cfg.batch_size])
            text.append(
                model.encode_text(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                .float()
                .cpu()
                .numpy()
            )
    model.train(was_training)
    return score(np.concatenate(audio), np.concatenate(text), owner)


# ----------------------------------------------------------------------------- the full step
class TowerStep:
    """Both towers run on decoded audio and tokenized captions: micro-batches of ``batch_size`` per
    process, ``grad_accum`` of them per optimizer step, gradients all-reduced by DDP on the last."""

    resumable = True

    def __init__(self, cfg: TrainConfig, rt, model, ddp_model, tokenizer, train_records, val_records, amp, scaler):
        from training.data.sampler import EpochSampler

        self.cfg, self.rt, self.model, self.ddp_model, self.tokenizer = cfg, rt, model, ddp_model, tokenizer
        self.val_records, self.amp, self.scaler = val_records, amp, scaler
        self.dataset = make_dataset(train_records, model, cfg, train=True)
        self.sampler = EpochSampler(len(self.dataset), seed=cfg.seed, shuffle=True, rank=rt.rank, world_size=rt.world)
        self.steps_per_epoch = self.sampler.per_rank // (cfg.batch_size * cfg.grad_accum)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.dataset)} training records cannot fill one step of "
                f"{cfg.batch_size} x {cfg.grad_accum} x {rt.world} clips; lower --batch-size"
            )
        self.summary = f"{len(self.dataset)} clips, {cfg.batch_size} x {cfg.grad_accum} x {rt.world} clips a step"
        self.batches = None

    def _open_epoch(self, state: TrainState):
        """A loader over the rest of the current epoch, from ``state.position`` (resume mid-epoch)."""
        from torch.utils.data import DataLoader

        from training.data.dataset import make_collate

        self.dataset.set_epoch(state.epoch)
        self.sampler.set_epoch(state.epoch)
        self.sampler.set_start(state.position)
        loader = DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            drop_last=True,
            collate_fn=make_collate(self.tokenizer),
            num_workers=self.cfg.workers,
            pin_memory=self.rt.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed + state.epoch),
        )
        return iter(loader)

    def step(self, state: TrainState) -> dict | None:
        cfg, device = self.cfg, self.rt.device
        if self.batches is None:
            self.batches = self._open_epoch(state)
        stats = {"loss": 0.0, "acc": 0.0, "wait": 0.0, "clips": cfg.batch_size * cfg.grad_accum * self.rt.world}
        for k in range(cfg.grad_accum):
            t0 = time.perf_counter()
            batch = next(self.batches, None)
            stats["wait"] += time.perf_counter() - t0
            if batch is None:  # the sampler ran dry; a partial accumulation is discarded
                self.batches = None
                return None
            state.position += cfg.batch_size
            # only the last micro-batch all-reduces its gradients
            sync = nullcontext() if (k == cfg.grad_accum - 1 or self.rt.world == 1) else self.ddp_model.no_sync()
            with sync, torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
                audio, text = self.ddp_model(
                    batch["features"].to(device, non_blocking=True),
                    batch["is_longer"].to(device),
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                )
                loss = contrastive_loss(audio.float(), text.float(), *self.model.logit_scales()) / cfg.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            stats["loss"] += float(loss.detach())
            stats["acc"] += batch_accuracy(audio.float(), text.float()) / cfg.grad_accum
        return stats

    def validate(self) -> dict:
        return validate(self.model, self.val_records, self.cfg, self.rt.device, self.tokenizer)
