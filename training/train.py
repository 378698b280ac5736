"""Train a CLAP model: read top to bottom, it is the whole recipe.

    clap-train train --model cnn10-minilm --train data/train.jsonl --val data/val.jsonl \\
        --text-init minilm/ --out runs/cnn10-minilm --epochs 20 --batch-size 64
    torchrun --nproc-per-node 8 -m training.cli train --config run.json     # multi-GPU / multi-node

1. setup: device, DDP (when launched by torchrun), seeds;
2. model: a registry config, optionally initialised from pretrained towers or a whole checkpoint,
   or the state of ``out_dir/checkpoints/last.pt`` when resuming;
3. data: manifest readers (bad lines reported with their line numbers), the dataset (runtime
   features + seeded training randomness), an epoch sampler that can restart mid-epoch;
4. loop: symmetric contrastive loss with learnable temperatures, AdamW with per-tower learning
   rates, warm-up + cosine schedule, gradient accumulation, mixed precision on GPU, gradient
   clipping; logs to stdout, ``metrics.jsonl`` and a progress bar;
5. every ``eval_every`` steps: validation retrieval metrics; every ``save_every``: an atomic
   checkpoint (``last.pt``, and ``best.pt`` when the validation metric improves).

Resuming (``--resume``, or just re-running the same command) continues from ``last.pt`` with the
same data order, augmentation draws, dropout draws and optimizer state, so an interrupted run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import TrainState, load_checkpoint, model_from_checkpoint, restore_rng, save_checkpoint
from training.loss import batch_accuracy, contrastive_loss, lr_at
from training.train_config import TrainConfig

log = logging.getLogger("clap-train")


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


# ----------------------------------------------------------------------------- 1. setup
def setup(cfg: TrainConfig) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU")
    if world > 1:  # launched by torchrun: it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        return Runtime(device, dist.get_rank(), world, local)
    return Runtime(torch.device("cuda" if cuda else "cpu"))


def cpu_has_bf16() -> bool:
    """Native bf16 matmul/conv on this CPU (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(cfg: TrainConfig, rt: Runtime) -> torch.dtype | None:
    """Mixed precision: weights, optimizer and loss stay fp32; the towers' matmuls and convolutions
    run in bf16 (fp16 + loss scaling when asked). ``auto``: bf16 on a GPU that supports it (else
    fp16), bf16 on a CPU with native bf16 (2.5x faster CNN steps on AVX-512 BF16,
    bench/RESULTS.md), fp32 elsewhere."""
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16":
        return torch.bfloat16
    if rt.device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


# ----------------------------------------------------------------------------- 2. model
def prepare_model(cfg: TrainConfig, resume: dict | None, captions: list[str], rank: int = 0):
    """(model, tokenizer.json text, notes)."""
    from training.models.clap import build_model
    from training.models.pretrained import clap_from_source, init_tower, split_spec

    if resume is not None:
        return model_from_checkpoint(resume).train(), resume["tokenizer_json"], ["resumed"]
    notes, tokenizer_dir = [], None
    if cfg.init:
        model, tokenizer_dir = clap_from_source(
            Path(cfg.init), tokenizer_dir=Path(cfg.tokenizer) if cfg.tokenizer else None,
            text_config=Path(cfg.laion_text_config) if cfg.laion_text_config else None)
        notes.append(f"initialised from {cfg.init}")
    else:
        model = build_model(cfg.model, seed=cfg.seed)
    if cfg.audio_init:
        notes.append("audio: " + init_tower(model, "audio", cfg.audio_init).summary())
    if cfg.text_init:
        notes.append("text: " + init_tower(model, "text", cfg.text_init).summary())
        folder = split_spec(cfg.text_init)[0]
        if (folder / "tokenizer.json").is_file():
            tokenizer_dir = tokenizer_dir or folder
    if cfg.tokenizer:
        tokenizer_dir = Path(cfg.tokenizer)
    if tokenizer_dir is None:  # a text tower trained from scratch gets a tokenizer of the same style
        from training.random_init import train_tokenizer

        config = model.config
        vocab = min(config.tokenizer_vocab_size, int(config.text.config.get("vocab_size", 2048)))
        folder = Path(cfg.out_dir) / ("tokenizer" if rank == 0 else f".tokenizer-rank{rank}")  # no write races
        tokenizer_dir = train_tokenizer(folder, vocab_size=vocab,
                                        corpus=captions or None, style=model.text.family)
        notes.append(f"trained a {model.text.family}-style tokenizer ({vocab} tokens) on the training captions")
    tokenizer_file = Path(tokenizer_dir) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer.json")
    if model.config.head is not None:  # label-space anchors follow the final text tower
        from indexer.text import TextTokenizer
        from training.models.clap import refresh_anchors

        refresh_anchors(model, TextTokenizer(tokenizer_file, max_length=model.config.text.max_length))
        notes.append("label-space anchors embedded with the text tower")
    return model.train(), tokenizer_file.read_text(), notes


def optimizer_for(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, one group per (tower, decay/no-decay). Frozen towers get no group at all."""
    rates = {"audio": cfg.lr_audio or cfg.lr, "text": cfg.lr_text or cfg.lr, "heads": cfg.lr_heads or cfg.lr}
    frozen = {"audio": cfg.freeze_audio, "text": cfg.freeze_text, "heads": False}
    groups = []
    for part, params in model.parameter_groups().items():
        for p in params:
            p.requires_grad_(not frozen[part])
        if frozen[part]:
            continue
        decay = [p for p in params if p.ndim >= 2]           # weights of linear/conv layers
        no_decay = [p for p in params if p.ndim < 2]         # biases, norms, temperatures
        groups += [{"params": decay, "weight_decay": cfg.weight_decay, "base_lr": rates[part], "name": part},
                   {"params": no_decay, "weight_decay": 0.0, "base_lr": rates[part], "name": part + "/no_decay"}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def set_train_mode(model, cfg: TrainConfig) -> None:
    """Train mode, but frozen towers stay in eval mode (LiT: their norms and dropout stay fixed)."""
    model.train()
    if cfg.freeze_audio:
        model.audio.eval()
    if cfg.freeze_text:
        model.text.eval()


# ----------------------------------------------------------------------------- 3. data
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
    from training.data.dataset import AugmentConfig, ClapDataset

    aug = cfg.augment.model_dump()
    augment = AugmentConfig(**aug) if train and cfg.augment.enabled else AugmentConfig.off()
    generator = None
    if train and cfg.caption_model:
        from training.data.captions import Seq2SeqCaptioner

        generator = Seq2SeqCaptioner(cfg.caption_model)
    policy = (CaptionPolicy(keyword_prob=cfg.keyword_prob, debias=cfg.debias, generator=generator) if train
              else CaptionPolicy(random_caption=False, random_template=False, debias=False))
    return ClapDataset(records, model.config.audio_frontend(), caption_policy=policy, augment=augment,
                       seed=cfg.seed, on_error=cfg.on_bad_record)


# ----------------------------------------------------------------------------- 5. validation
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


def validate(model, records, cfg: TrainConfig, rt: Runtime, tokenizer_file: Path) -> dict:
    """Retrieval metrics on the validation records, with serving features (no augmentation)."""
    from training.data.dataset import stack_features

    from torch.utils.data import DataLoader

    from indexer.text import TextTokenizer
    from training.data.dataset import ClapDataset
    from training.metrics import retrieval_metrics

    data: ClapDataset = make_dataset(records, model, cfg, train=False)
    tokenizer = TextTokenizer(tokenizer_file, max_length=model.config.text.max_length,
                              pad_token_id=int(model.text.model.config.pad_token_id or 0))
    captions, owner = validation_texts(records)
    was_training = model.training
    model.eval()
    audio, text = [], []
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                        collate_fn=_as_list)
    with torch.inference_mode():
        for items in loader:  # decoding in the workers, in order
            features = stack_features([it["features"] for it in items]).to(rt.device)
            longer = torch.stack([torch.as_tensor(it["is_longer"]) for it in items]).to(rt.device)
            audio.append(model.encode_audio(features, longer).float().cpu().numpy())
        for start in range(0, len(captions), cfg.batch_size):
            ids, mask = tokenizer.encode_batch(captions[start : start + cfg.batch_size])
            text.append(model.encode_text(torch.from_numpy(ids).to(rt.device),
                                          torch.from_numpy(mask).to(rt.device)).float().cpu().numpy())
    model.train(was_training)
    result = retrieval_metrics(np.concatenate(audio), np.concatenate(text), np.array(owner))
    recalls = [result[d][f"R@{k}"] for d in ("text_to_audio", "audio_to_text") for k in (1, 5, 10)]
    result["mean_recall"] = float(np.mean(recalls))
    return result


# ----------------------------------------------------------------------------- 4. the loop
def train(cfg: TrainConfig, *, stop_after_steps: int | None = None) -> TrainState:
    """Run (or resume) training; returns the final state. ``stop_after_steps`` ends the process's
    work early as if it had been killed right after that step's checkpoint (tests use it)."""
    from torch.utils.data import DataLoader

    from indexer.text import TextTokenizer
    from training.data.dataset import make_collate
    from training.data.sampler import EpochSampler

    rt = setup(cfg)
    out = Path(cfg.out_dir)
    last = cfg.checkpoint_dir / "last.pt"
    # cached-heads runs restart their (fast) head training; the tower cache itself is reused
    resume = load_checkpoint(last) if last.is_file() and not cfg.cache_towers else None
    train_records = read_records(cfg.train_manifest, cfg.train_split, cfg, "train")
    val_records = read_records(cfg.val_manifest, cfg.val_split, cfg, "val") if cfg.val_manifest else None
    captions = [c for r in train_records for c in r.captions] + [", ".join(r.tags) for r in train_records if r.tags]
    model, tokenizer_json, notes = prepare_model(cfg, resume, captions, rt.rank)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer_file = out / "tokenizer.json"
    if rt.main:
        tokenizer_file.write_text(tokenizer_json)
        (out / "train_config.json").write_text(cfg.model_dump_json(indent=2) + "\n")
    for note in notes:
        log.info(note)
    model.to(rt.device)
    if hasattr(model.audio, "prefer_channels_last"):
        model.audio.prefer_channels_last()
    model_config_json = model.full_config().model_dump_json()
    optimizer = optimizer_for(model, cfg)
    amp = autocast_dtype(cfg, rt)
    scaler = torch.amp.GradScaler(rt.device.type) if amp == torch.float16 else None
    state = TrainState()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        state = resume["state"]
        restore_rng(resume)
        log.info("resuming from %s at step %d (epoch %d, item %d)", last, state.step, state.epoch, state.position)
    else:
        torch.manual_seed(cfg.seed + rt.rank)
    ddp_model = model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    set_train_mode(model, cfg)

    tokenizer = TextTokenizer(tokenizer_file if rt.main else _tokenizer_copy(tokenizer_json, out, rt),
                              max_length=model.config.text.max_length,
                              pad_token_id=int(model.text.model.config.pad_token_id or 0))
    if cfg.cache_towers:
        if rt.world > 1:
            raise ValueError("cache_towers trains on one process; launch it without torchrun")
        from training.cached import train_heads

        return train_heads(cfg, model, tokenizer, tokenizer_json, train_records, val_records, rt.device, amp)
    dataset = make_dataset(train_records, model, cfg, train=True)
    sampler = EpochSampler(len(dataset), seed=cfg.seed, shuffle=True, rank=rt.rank, world_size=rt.world)
    micro = cfg.batch_size
    steps_per_epoch = sampler.per_rank // (micro * cfg.grad_accum)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} training records cannot fill one step of "
                         f"{micro} x {cfg.grad_accum} x {rt.world} clips; lower --batch-size")
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    metrics_file = open(out / "metrics.jsonl", "a") if rt.main else None
    bar = _progress(cfg, rt, total_steps, state.step)
    log.info("training %d clips, %d steps of %d x %d x %d clips, %s, autocast=%s", len(dataset), total_steps,
             micro, cfg.grad_accum, rt.world, rt.device, amp)

    def checkpoint(name: str) -> None:
        if rt.main:
            save_checkpoint(cfg.checkpoint_dir / name, model=model, model_config_json=model_config_json,
                            tokenizer_json=tokenizer_json, state=state, optimizer=optimizer, scaler=scaler,
                            train_config_json=cfg.model_dump_json())

    window = {"loss": 0.0, "acc": 0.0, "wait": 0.0, "time": 0.0, "n": 0}
    batches = None
    while state.step < total_steps:
        if batches is None:  # (re)open the epoch at the current position
            dataset.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch)
            sampler.set_start(state.position)
            loader = DataLoader(dataset, batch_size=micro, sampler=sampler, drop_last=True,
                                collate_fn=make_collate(tokenizer), num_workers=cfg.workers,
                                pin_memory=rt.device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed + state.epoch))
            batches = iter(loader)
        step_start = time.perf_counter()
        wait, lr_step = 0.0, state.step
        for group in optimizer.param_groups:
            group["lr"] = lr_at(lr_step, base_lr=group["base_lr"], warmup_steps=cfg.warmup_steps,
                                total_steps=total_steps, min_ratio=cfg.min_lr_ratio)
        optimizer.zero_grad(set_to_none=True)
        epoch_done = False
        for k in range(cfg.grad_accum):
            t0 = time.perf_counter()
            batch = next(batches, None)
            wait += time.perf_counter() - t0
            if batch is None:
                epoch_done = True
                break
            state.position += micro
            sync = nullcontext() if (k == cfg.grad_accum - 1 or rt.world == 1) else ddp_model.no_sync()
            with sync, torch.autocast(rt.device.type, dtype=amp, enabled=amp is not None):
                audio, text = ddp_model(batch["features"].to(rt.device, non_blocking=True),
                                        batch["is_longer"].to(rt.device), batch["input_ids"].to(rt.device),
                                        batch["attention_mask"].to(rt.device))
                scale_a, scale_t = model.logit_scales()
                loss = contrastive_loss(audio.float(), text.float(), scale_a, scale_t) / cfg.grad_accum
                (scaler.scale(loss) if scaler else loss).backward()
            window["loss"] += float(loss.detach())
            window["acc"] += batch_accuracy(audio.float(), text.float()) / cfg.grad_accum
        if epoch_done:  # the sampler ran dry: next epoch; a partial accumulation is discarded
            state.epoch, state.position, batches = state.epoch + 1, 0, None
            continue
        if scaler:
            scaler.unscale_(optimizer)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        state.step += 1
        state.samples_seen += micro * cfg.grad_accum * rt.world
        window["wait"] += wait
        window["time"] += time.perf_counter() - step_start
        window["n"] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{window['loss'] / window['n']:.3f}", refresh=False)

        if state.step % cfg.log_every == 0 or state.step == total_steps:
            n = window["n"]
            record = {"step": state.step, "epoch": state.epoch, "loss": window["loss"] / n,
                      "batch_acc": window["acc"] / n, "lr": optimizer.param_groups[0]["lr"],
                      "logit_scale_a": float(model.logit_scales()[0].detach()),
                      "logit_scale_t": float(model.logit_scales()[1].detach()),
                      "clips_per_s": n * micro * cfg.grad_accum * rt.world / window["time"],
                      "data_wait_share": window["wait"] / window["time"]}
            _emit(record, metrics_file, bar)
            window = {"loss": 0.0, "acc": 0.0, "wait": 0.0, "time": 0.0, "n": 0}
        final = state.step == total_steps
        if val_records and rt.main and (state.step % cfg.eval_every == 0 or final):
            result = validate(model, val_records, cfg, rt, tokenizer_file)
            set_train_mode(model, cfg)
            direction, _, name = cfg.select_metric.partition(".")
            value = float(result[direction][name] if name else result[direction])
            state.history.append({"step": state.step, "metric": value})
            _emit({"step": state.step, "eval": result}, metrics_file, bar)
            if state.best_metric is None or value > state.best_metric:
                state.best_metric, state.best_step = value, state.step
                checkpoint("best.pt")
        if state.step % cfg.save_every == 0 or final:
            checkpoint("last.pt")
            if not val_records and final:
                checkpoint("best.pt")  # nothing to select by: the final weights are the best we know
        if stop_after_steps is not None and state.step >= stop_after_steps:
            break
    if bar is not None:
        bar.close()
    if metrics_file:
        metrics_file.close()
    if rt.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return state


def _as_list(items: list) -> list:
    """A picklable identity collate (spawned workers must pickle it)."""
    return items


def _tokenizer_copy(text: str, out: Path, rt: Runtime) -> Path:
    """Non-zero ranks read their own copy: rank 0 may still be writing the shared one."""
    path = out / f".tokenizer.rank{rt.rank}.json"
    path.write_text(text)
    return path


def _progress(cfg: TrainConfig, rt: Runtime, total: int, done: int):
    if not (cfg.progress and rt.main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True)


def _emit(record: dict, fh, bar) -> None:
    line = json.dumps(record)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()
    (bar.write if bar is not None else print)(line)
