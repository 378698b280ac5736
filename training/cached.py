"""Train only the projection heads, on cached tower outputs: CLAP alignment on a CPU budget.

    clap-train train --model sfx-cnn9-minilm --audio-init aisfx.pth:embedding_net. \\
        --text-init minilm/ --train corpus.jsonl --train-split train --val corpus.jsonl \\
        --val-split val --set cache_towers=true --set cache_views=8 --epochs 300

With both towers locked (the LiT idea taken to both sides), each tower's pooled output for a given
input never changes during training, so it is computed once:

(``freeze_text=false`` keeps only the audio side cached and fine-tunes the text tower with the
heads: one text-tower pass per step, still far cheaper than running the audio CNN.)

1. every training clip is rendered ``cache_views`` times through the normal training dataset
   (random crops, gain, noise, two-clip mixing, keyword captions: each view has its own caption)
   and the audio tower's pooled output of each view is stored, with its caption;
2. every distinct caption goes once through the text tower;
3. the heads (two projection MLPs and the temperatures) train on those vectors with the same
   contrastive loss, schedule and optimizer as the full loop, thousands of steps a minute;
4. validation uses serving features (no augmentation) and the same retrieval metrics; ``best.pt``
   and ``last.pt`` are ordinary checkpoints of the whole model, so export and evaluation are
   unchanged.

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

import numpy as np
import torch

from training.checkpoint import TrainState, save_checkpoint
from training.loss import batch_accuracy, contrastive_loss, lr_at
from training.train_config import TrainConfig

log = logging.getLogger("clap-train")
CACHE_KEY_FIELDS = {"model", "init", "audio_init", "text_init", "tokenizer", "laion_text_config", "train_manifest",
                    "train_split", "val_manifest", "val_split", "on_bad_record", "keyword_prob", "debias",
                    "caption_model", "augment", "seed", "cache_views", "precision", "device"}


def _encode_texts(model, tokenizer, texts: list[str], device, batch: int = 256) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            ids, mask = tokenizer.encode_batch(texts[start : start + batch])
            out.append(model.text(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)).float().cpu())
    return torch.cat(out)


def _audio_outputs(model, dataset, cfg: TrainConfig, device, amp, epoch: int, desc: str):
    """Pooled audio-tower outputs and captions of every clip, for one rendering (``epoch``)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from training.train import _as_list
    from training.data.dataset import stack_features

    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                        collate_fn=_as_list)
    feats, captions = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for items in tqdm(loader, desc=desc, unit="batch", disable=not cfg.progress, leave=False):
            x = stack_features([it["features"] for it in items]).to(device)
            longer = torch.stack([torch.as_tensor(it["is_longer"]) for it in items]).to(device)
            feats.append(model.audio(x, longer).float().cpu())
            captions += [it["caption"] for it in items]
    return torch.cat(feats), captions


def build_cache(model, train_records, val_records, cfg: TrainConfig, tokenizer, device, amp) -> dict:
    from training.train import make_dataset, validation_texts

    model.eval()
    train_set = make_dataset(train_records, model, cfg, train=True)
    views, captions = [], []
    for v in range(cfg.cache_views):
        feats, caps = _audio_outputs(model, train_set, cfg, device, amp, v, f"audio view {v + 1}/{cfg.cache_views}")
        views.append(feats)
        captions.append(caps)
    unique = sorted({c for caps in captions for c in caps})
    index = {c: i for i, c in enumerate(unique)}
    cache = {"audio": torch.stack(views, dim=1),                                   # (N, V, W_audio)
             "caption_ids": torch.tensor([[index[c] for c in caps] for caps in captions]).T,  # (N, V)
             "text": _encode_texts(model, tokenizer, unique, device), "captions": unique}
    if val_records:
        val_set = make_dataset(val_records, model, cfg, train=False)
        feats, _ = _audio_outputs(model, val_set, cfg, device, amp, 0, "validation audio")
        texts, owner = validation_texts(val_records)
        cache.update(val_audio=feats, val_text=_encode_texts(model, tokenizer, texts, device), val_texts=texts,
                     val_owner=torch.tensor(owner))
    return cache


def _validate(model, cache, tokenizer=None, device="cpu") -> dict:
    """Retrieval on the validation vectors; with ``tokenizer`` the text tower is re-run (it trains)."""
    from training.metrics import retrieval_metrics

    if tokenizer is not None:
        was = model.text.training
        model.text.eval()
        cache = {**cache, "val_text": _encode_texts(model, tokenizer, cache["val_texts"], device)}
        model.text.train(was)
    with torch.inference_mode():
        a = torch.nn.functional.normalize(model.audio_projection(cache["val_audio"]), dim=-1)
        t = torch.nn.functional.normalize(model.text_projection(cache["val_text"]), dim=-1)
    result = retrieval_metrics(a.numpy(), t.numpy(), cache["val_owner"].numpy())
    result["mean_recall"] = float(np.mean([result[d][f"R@{k}"] for d in ("text_to_audio", "audio_to_text")
                                           for k in (1, 5, 10)]))
    return result


def train_heads(cfg: TrainConfig, model, tokenizer, tokenizer_json: str, train_records, val_records,
                device, amp) -> TrainState:
    """Steps 1-4 of the module docstring; returns the final state (``best.pt`` holds the best)."""
    out = Path(cfg.out_dir)
    cache_file = out / "tower_cache.pt"
    # What the cached vectors depend on (not the head-training settings, so sweeps reuse the cache).
    key = json.dumps({"cfg": cfg.model_dump(include=CACHE_KEY_FIELDS), "train": len(train_records),
                      "val": len(val_records or [])}, sort_keys=True)
    cache = torch.load(cache_file, weights_only=True) if cache_file.is_file() else None
    if cache is None or cache.get("key") != key:
        started = time.perf_counter()
        cache = build_cache(model, train_records, val_records, cfg, tokenizer, device, amp)
        cache["key"] = key
        torch.save(cache, cache_file)
        log.info("cached %d clips x %d views and %d captions in %.0f s", cache["audio"].shape[0],
                 cache["audio"].shape[1], len(cache["captions"]), time.perf_counter() - started)
    if val_records and "val_texts" not in cache:  # caches written before the text tower could train
        from training.train import validation_texts

        cache["val_texts"] = validation_texts(val_records)[0]
    clips, views = cache["caption_ids"].shape
    heads = [*model.audio_projection.parameters(), *model.text_projection.parameters(),
             model.logit_scale_a, model.logit_scale_t]
    # freeze_text=false: the text tower fine-tunes on the cached audio vectors (it runs every step)
    train_text = not cfg.freeze_text
    text_params = list(model.text.parameters()) if train_text else []
    for p in model.parameters():
        p.requires_grad_(False)
    for p in heads + text_params:
        p.requires_grad_(True)
    base_lr = cfg.lr_heads or cfg.lr
    groups = [{"params": [p for p in heads if p.ndim >= 2], "weight_decay": cfg.weight_decay, "base_lr": base_lr},
              {"params": [p for p in heads if p.ndim < 2], "weight_decay": 0.0, "base_lr": base_lr}]
    if train_text:
        text_lr = cfg.lr_text or cfg.lr
        groups += [{"params": [p for p in text_params if p.ndim >= 2], "weight_decay": cfg.weight_decay,
                    "base_lr": text_lr},
                   {"params": [p for p in text_params if p.ndim < 2], "weight_decay": 0.0, "base_lr": text_lr}]
    optimizer = torch.optim.AdamW(groups, lr=base_lr, betas=(0.9, 0.98), eps=1e-6)
    trainable = heads + text_params
    batch = min(cfg.batch_size, clips)
    steps_per_epoch = clips // batch
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed)
    state, metrics_file = TrainState(), open(out / "metrics.jsonl", "a")
    model.audio_projection.train()
    model.text_projection.train()
    model.text.train(train_text)
    model_config_json = model.full_config().model_dump_json()

    def checkpoint(name: str) -> None:
        save_checkpoint(cfg.checkpoint_dir / name, model=model, model_config_json=model_config_json,
                        tokenizer_json=tokenizer_json, state=state, train_config_json=cfg.model_dump_json())

    order = torch.randperm(clips, generator=gen)
    losses: list[float] = []
    while state.step < total:
        pos = (state.step % steps_per_epoch) * batch
        if pos == 0 and state.step:
            order, state.epoch = torch.randperm(clips, generator=gen), state.epoch + 1
        rows = order[pos : pos + batch]
        pick = torch.randint(0, views, (rows.shape[0],), generator=gen)
        audio_in = cache["audio"][rows, pick]
        caption_ids = cache["caption_ids"][rows, pick]
        if train_text:
            ids, mask = tokenizer.encode_batch([cache["captions"][int(i)] for i in caption_ids])
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                text_in = model.text(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)).float()
        else:
            text_in = cache["text"][caption_ids]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.step, base_lr=group["base_lr"], warmup_steps=cfg.warmup_steps,
                                total_steps=total, min_ratio=cfg.min_lr_ratio)
        a = torch.nn.functional.normalize(model.audio_projection(audio_in), dim=-1)
        t = torch.nn.functional.normalize(model.text_projection(text_in), dim=-1)
        loss = contrastive_loss(a, t, *model.logit_scales())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        state.step += 1
        state.samples_seen += rows.shape[0]
        losses.append(float(loss.detach()))
        if state.step % cfg.log_every == 0 or state.step == total:
            record = {"step": state.step, "epoch": state.epoch, "loss": float(np.mean(losses)),
                      "batch_acc": batch_accuracy(a.detach(), t.detach()), "lr": optimizer.param_groups[0]["lr"],
                      "logit_scale_a": float(model.logit_scales()[0].detach()), "mode": "cached heads"}
            metrics_file.write(json.dumps(record) + "\n")
            losses = []
        if val_records and (state.step % cfg.eval_every == 0 or state.step == total):
            result = _validate(model, cache, tokenizer if train_text else None, device)
            direction, _, name = cfg.select_metric.partition(".")
            value = float(result[direction][name] if name else result[direction])
            state.history.append({"step": state.step, "metric": value})
            metrics_file.write(json.dumps({"step": state.step, "eval": result}) + "\n")
            print(json.dumps({"step": state.step, cfg.select_metric: round(value, 4),
                              "t2a_R@1": result["text_to_audio"]["R@1"], "a2t_R@1": result["audio_to_text"]["R@1"]}))
            if state.best_metric is None or value > state.best_metric:
                state.best_metric, state.best_step = value, state.step
                checkpoint("best.pt")
    metrics_file.close()
    checkpoint("last.pt")
    if not val_records:
        checkpoint("best.pt")
    return state
