"""Train only the projection heads, on cached tower outputs: CLAP alignment on a CPU budget.

    clap-train train --model sfx-cnn9-minilm --audio-init aisfx.pth:embedding_net. \\
        --text-init minilm/ --train corpus.jsonl --train-split train --val corpus.jsonl \\
        --val-split val --set cache_towers=true --set cache_views=8 --epochs 300

With both towers locked (the LiT idea taken to both sides), each tower's pooled output for a given
input never changes during training, so it is computed once (``freeze_text=false`` caches only the
audio side and fine-tunes the text tower with the heads: still far cheaper than the audio CNN):

1. every training clip is rendered ``cache_views`` times through the normal training dataset
   (random crops, gain, noise, two-clip mixing, keyword captions: each view has its own caption)
   and the audio tower's pooled output of each view is stored, with its caption;
2. every distinct caption goes once through the text tower;
3. the heads (two projection MLPs and the temperatures) train on those vectors: this module is
   only the step (:class:`CachedStep`); the loop, schedule, optimizer, logging, validation
   timing and checkpoints are ``training.train``'s, thousands of steps a minute;
4. validation uses serving features and the same metrics; ``best.pt`` and ``last.pt`` are
   ordinary checkpoints of the whole model.

Worth it when the data is small (a few thousand clips) and pretrained towers are strong: a fully
fine-tuned tower would overfit, and on 2 CPU cores one pass of a CNN over the data costs minutes
while the heads need thousands of passes. The cache is saved in ``out_dir/tower_cache.pt`` and
reused when the same run is started again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from training.checkpoint import TrainState
from training.loss import batch_accuracy, contrastive_loss
from training.steps import as_list, audio_batch, make_dataset, score, validation_texts
from training.train_config import TrainConfig

log = logging.getLogger("clap-train")
CACHE_KEY_FIELDS = set(
    "model init audio_init text_init tokenizer laion_text_config train_manifest train_split val_manifest "
    "val_split on_bad_record keyword_prob debias caption_model augment seed cache_views precision device".split()
)


def audio_outputs(model, dataset, cfg: TrainConfig, device, amp, epoch: int, desc: str):
    """Pooled audio-tower outputs and captions of every clip, for one rendering (``epoch``)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers, collate_fn=as_list)
    feats, captions = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for items in tqdm(loader, desc=desc, unit="batch", disable=not cfg.progress, leave=False):
            feats.append(model.audio(*audio_batch(items, device)).float().cpu())
            captions += [it["caption"] for it in items]
    return torch.cat(feats), captions


def build_cache(model, train_records, val_records, cfg: TrainConfig, tokenizer, device, amp) -> dict:
    model.eval()
    train_set = make_dataset(train_records, model, cfg, train=True)
    views, captions = [], []
    for v in range(cfg.cache_views):
        feats, caps = audio_outputs(model, train_set, cfg, device, amp, v, f"audio view {v + 1}/{cfg.cache_views}")
        views.append(feats)
        captions.append(caps)
    unique = sorted({c for caps in captions for c in caps})
    index = {c: i for i, c in enumerate(unique)}
    cache = {
        "audio": torch.stack(views, dim=1),  # (N, V, W_audio)
        "caption_ids": torch.tensor([[index[c] for c in caps] for caps in captions]).T,  # (N, V)
        "text": model.text_outputs(tokenizer, unique),
        "captions": unique,
    }
    if val_records:
        val_set = make_dataset(val_records, model, cfg, train=False)
        feats, _ = audio_outputs(model, val_set, cfg, device, amp, 0, "validation audio")
        texts, owner = validation_texts(val_records)
        cache.update(
            val_audio=feats,
            val_text=model.text_outputs(tokenizer, texts),
            val_texts=texts,
            val_owner=torch.tensor(owner),
        )
    return cache


def load_or_build_cache(cfg: TrainConfig, model, tokenizer, train_records, val_records, device, amp) -> dict:
    """``out_dir/tower_cache.pt`` when it was built from the same inputs, else a new one (saved)."""
    cache_file = Path(cfg.out_dir) / "tower_cache.pt"
    # What the cached vectors depend on (not the head-training settings, so sweeps reuse the cache).
    key = json.dumps(
        {
            "cfg": cfg.model_dump(mode="json", include=CACHE_KEY_FIELDS),
            "train": len(train_records),
            "val": len(val_records or []),
        },
        sort_keys=True,
    )
    cache = torch.load(cache_file, weights_only=True) if cache_file.is_file() else None
    if cache is None or cache.get("key") != key:
        started = time.perf_counter()
        cache = build_cache(model, train_records, val_records, cfg, tokenizer, device, amp)
        cache["key"] = key
        torch.save(cache, cache_file)
        log.info(
            "cached %d clips x %d views and %d captions in %.0f s",
            cache["audio"].shape[0],
            cache["audio"].shape[1],
            len(cache["captions"]),
            time.perf_counter() - started,
        )
    return cache


class CachedStep:
    """One optimizer step on cached vectors: a batch of clips, one random cached view of each, its
    caption's text vector (or, with ``freeze_text=false``, the text tower run on that caption)."""

    resumable = False  # the head training restarts (it is fast); the tower cache is what is reused

    def __init__(self, cfg: TrainConfig, model, tokenizer, train_records, val_records, device, amp, scaler):
        self.cfg, self.model, self.tokenizer, self.device, self.amp, self.scaler = (
            cfg,
            model,
            tokenizer,
            device,
            amp,
            scaler,
        )
        self.cache = load_or_build_cache(cfg, model, tokenizer, train_records, val_records, device, amp)
        self.clips, self.views = self.cache["caption_ids"].shape
        self.batch = min(cfg.batch_size, self.clips)
        self.steps_per_epoch = self.clips // self.batch
        self.summary = f"cached heads: {self.clips} clips x {self.views} views, {self.batch} a step"
        self.train_text = not cfg.freeze_text
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.order = None

    def step(self, state: TrainState) -> dict | None:
        if state.position + self.batch > self.clips:
            return None
        if state.position == 0:  # a new epoch: a new clip order
            self.order = torch.randperm(self.clips, generator=self.generator)
        rows = self.order[state.position : state.position + self.batch]
        state.position += self.batch
        pick = torch.randint(0, self.views, (rows.shape[0],), generator=self.generator)
        audio_in = self.cache["audio"][rows, pick].to(self.device)
        caption_ids = self.cache["caption_ids"][rows, pick]
        if self.train_text:
            ids, mask = self.tokenizer.encode_batch([self.cache["captions"][int(i)] for i in caption_ids])
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                text_in = self.model.text(
                    torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
                ).float()
        else:
            text_in = self.cache["text"][caption_ids].to(self.device)
        a = F.normalize(self.model.audio_projection(audio_in), dim=-1)
        t = F.normalize(self.model.text_projection(text_in), dim=-1)
        loss = contrastive_loss(a, t, *self.model.logit_scales())
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return {
            "loss": float(loss.detach()),
            "acc": batch_accuracy(a.detach(), t.detach()),
            "wait": 0.0,
            "clips": int(rows.shape[0]),
        }

    def validate(self) -> dict:
        """Retrieval on the cached validation vectors; a training text tower is re-run on the texts."""
        cache, model = self.cache, self.model
        val_text = model.text_outputs(self.tokenizer, cache["val_texts"]) if self.train_text else cache["val_text"]
        with torch.inference_mode():
            a = F.normalize(model.audio_projection(cache["val_audio"].to(self.device)), dim=-1)
            t = F.normalize(model.text_projection(val_text.to(self.device)), dim=-1)
        return score(a.float().cpu().numpy(), t.float().cpu().numpy(), cache["val_owner"].numpy())
