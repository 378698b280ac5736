"""Train a CLAP model: read top to bottom, it is the whole recipe.

    clap-train train --model cnn10-minilm --train data/train.jsonl --val data/val.jsonl \\
        --text-init minilm/ --out runs/cnn10-minilm --epochs 20 --batch-size 64
    torchrun --nproc-per-node 8 -m training.cli train --config run.json     # multi-GPU / multi-node

1. setup: device, DDP (when launched by torchrun), seeds;
2. model: ``training.models.factory.create_model`` for a registry config or a whole pretrained
   model, towers from pretrained weights, or the state of ``out_dir/checkpoints/last.pt``;
3. the loop, the same for every mode: AdamW with per-tower rates (``configure_optimizers``),
   warm-up + cosine schedule, gradient clipping, mixed precision, logs to stdout,
   ``metrics.jsonl`` and a progress bar; every ``eval_every`` steps validation metrics and
   ``best.pt`` when the selected one improves; every ``save_every`` an atomic ``last.pt``.
   What one step computes is the mode's (``training.steps``): the towers on decoded audio with
   gradient accumulation and DDP (:class:`~training.steps.TowerStep`), or the heads on cached
   tower outputs (:class:`~training.cached.CachedStep`, ``cache_towers=true``).

Resuming (``--resume``, or just re-running the same command) continues from ``last.pt`` with the
same data order, augmentation draws, dropout draws and optimizer state, so an interrupted run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from training.cached import CachedStep
from training.checkpoint import TrainState, load_checkpoint, restore_rng, save_checkpoint
from training.loss import lr_at
from training.steps import TowerStep, read_records
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
    from training.models.factory import create_model, init_tower
    from training.models.pretrained import split_spec

    if resume is not None:
        return create_model(pretrained=resume).train(), resume["tokenizer_json"], ["resumed"]
    # a whole-model source brings its own architecture (cfg.model is only the default then)
    model = create_model(
        None if cfg.init else cfg.model,
        pretrained=cfg.init,
        seed=cfg.seed,
        tokenizer=cfg.tokenizer,
        text_config=cfg.laion_text_config,
    )
    notes, tokenizer_dir = [f"initialised from {cfg.init}"] if cfg.init else [], model.tokenizer_dir
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
        tokenizer_dir = train_tokenizer(folder, vocab_size=vocab, corpus=captions or None, style=model.text.family)
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


def frozen_parts(cfg: TrainConfig) -> set[str]:
    """Parts that take no gradients: the locked towers (cached-tower runs always lock the audio)."""
    return {
        part for part, locked in (("audio", cfg.freeze_audio or cfg.cache_towers), ("text", cfg.freeze_text)) if locked
    }


def set_train_mode(model, cfg: TrainConfig) -> None:
    """Train mode, but frozen towers stay in eval mode (LiT: their norms and dropout stay fixed)."""
    model.train()
    for part in frozen_parts(cfg):
        getattr(model, part).eval()


# ----------------------------------------------------------------------------- 3. the loop
@dataclass
class Run:
    """What the loop works on, set up by :func:`start`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    state: TrainState
    step: TowerStep | CachedStep  # what one optimizer step computes (training.steps)
    has_val: bool
    checkpoint: Callable[[str], None]


def start(cfg: TrainConfig, rt: Runtime) -> Run:
    """Model, optimizer, state (fresh or resumed) and the step of this run's mode."""
    from indexer.text import TextTokenizer

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
    rates = {"audio": cfg.lr_audio or cfg.lr, "text": cfg.lr_text or cfg.lr, "heads": cfg.lr_heads or cfg.lr}
    optimizer = model.configure_optimizers(cfg.weight_decay, rates, frozen_parts(cfg))
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
    tokenizer = TextTokenizer(
        tokenizer_file if rt.main else _tokenizer_copy(tokenizer_json, out, rt),
        max_length=model.config.text.max_length,
        pad_token_id=int(model.text.model.config.pad_token_id or 0),
    )
    step = make_step(cfg, rt, model, tokenizer, train_records, val_records, amp, scaler)
    set_train_mode(model, cfg)
    model_config_json = model.full_config().model_dump_json()

    def checkpoint(name: str) -> None:
        if rt.main:
            save_checkpoint(
                cfg.checkpoint_dir / name,
                model=model,
                model_config_json=model_config_json,
                tokenizer_json=tokenizer_json,
                state=state,
                train_config_json=cfg.model_dump_json(),
                # optimizer state only where a run can continue from it
                **({"optimizer": optimizer, "scaler": scaler} if step.resumable else {}),
            )

    log.info("training %s on %s, autocast=%s", step.summary, rt.device, amp)
    return Run(model, optimizer, scaler, state, step, bool(val_records), checkpoint)


def make_step(cfg: TrainConfig, rt: Runtime, model, tokenizer, train_records, val_records, amp, scaler):
    """The mode's step: cached tower outputs (one process), or the towers themselves (DDP-wrapped
    when launched by torchrun)."""
    if cfg.cache_towers:
        if rt.world > 1:
            raise ValueError("cache_towers trains on one process; launch it without torchrun")
        return CachedStep(cfg, model, tokenizer, train_records, val_records, rt.device, amp, scaler)
    ddp_model = model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    return TowerStep(cfg, rt, model, ddp_model, tokenizer, train_records, val_records, amp, scaler)


def optimizer_step(run: Run, cfg: TrainConfig) -> None:
    """Unscale (fp16), clip, step: the gradients the step left behind become an update."""
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in run.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()


def evaluate(run: Run, cfg: TrainConfig) -> dict:
    """Validation metrics (returned as a log record); ``best.pt`` when the selected one improved."""
    state = run.state
    result = run.step.validate()
    set_train_mode(run.model, cfg)
    direction, _, name = cfg.select_metric.partition(".")
    value = float(result[direction][name] if name else result[direction])
    state.history.append({"step": state.step, "metric": value})
    if state.best_metric is None or value > state.best_metric:
        state.best_metric, state.best_step = value, state.step
        run.checkpoint("best.pt")
    return {"step": state.step, "eval": result}


def train(cfg: TrainConfig, *, stop_after_steps: int | None = None) -> TrainState:
    """Run (or resume) training; returns the final state. ``stop_after_steps`` ends the process's
    work early as if it had been killed right after that step's checkpoint (tests use it)."""
    rt = setup(cfg)
    run = start(cfg, rt)
    state, step = run.state, run.step
    total_steps = cfg.max_steps or cfg.epochs * step.steps_per_epoch
    metrics_file = open(Path(cfg.out_dir) / "metrics.jsonl", "a") if rt.main else None
    bar = _progress(cfg, rt, total_steps, state.step)
    window = Counter()  # sums since the last log line
    while state.step < total_steps:
        started = time.perf_counter()
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(
                state.step,
                base_lr=group["base_lr"],
                warmup_steps=cfg.warmup_steps,
                total_steps=total_steps,
                min_ratio=cfg.min_lr_ratio,
            )
        run.optimizer.zero_grad(set_to_none=True)
        stats = step.step(state)
        if stats is None:  # the epoch ran dry: next epoch
            state.epoch, state.position = state.epoch + 1, 0
            continue
        optimizer_step(run, cfg)
        state.step += 1
        state.samples_seen += stats["clips"]
        window.update({**stats, "time": time.perf_counter() - started, "n": 1})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{window['loss'] / window['n']:.3f}", refresh=False)
        final = state.step == total_steps
        if state.step % cfg.log_every == 0 or final:
            _emit(log_record(window, state, run), metrics_file, bar)
            window = Counter()
        if run.has_val and rt.main and (state.step % cfg.eval_every == 0 or final):
            _emit(evaluate(run, cfg), metrics_file, bar)
        if (step.resumable and state.step % cfg.save_every == 0) or final:
            run.checkpoint("last.pt")
            if not run.has_val and final:
                run.checkpoint("best.pt")  # nothing to select by: the final weights are the best we know
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


def log_record(window: Counter, state: TrainState, run: Run) -> dict:
    """The log line of the optimizer steps summed in ``window`` (means per step, rates per second)."""
    scale_a, scale_t = run.model.logit_scales()
    n, seconds = window["n"], window["time"]
    return {
        "step": state.step,
        "epoch": state.epoch,
        "loss": window["loss"] / n,
        "batch_acc": window["acc"] / n,
        "lr": run.optimizer.param_groups[0]["lr"],
        "logit_scale_a": float(scale_a.detach()),
        "logit_scale_t": float(scale_t.detach()),
        "clips_per_s": window["clips"] / seconds,
        "data_wait_share": window["wait"] / seconds,
    }


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
