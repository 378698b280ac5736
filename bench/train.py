#!/usr/bin/env python
"""Training throughput benchmark: clips/s of a training step, ours vs transformers' ClapModel on the
same config and batch (and cnn10-minilm, which has no reference implementation), and the real
training loop's clips/s and data-wait share per DataLoader worker count, on the same machine in the
same run. On CUDA also bf16 and fp16 (GradScaler) steps. How each part is measured: bench/README.md.

    python bench/train.py                        # full run: ~6-10 min on 2 CPU cores -> bench/results-train.json
    python bench/train.py --quick                # smoke run on micro models, well under a minute
    python bench/train.py --device cuda          # on a GPU: fp32, bf16 and fp16 (GradScaler) model steps
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, print_contention, print_head, synth, work_folder  # noqa: E402
from machine import CpuMonitor, cpu_info, line_buffered_stdout, loadavg_figures, wait_quiet, write_results  # noqa: E402

FRAMES, MELS = 1001, 64  # one 10 s clip of the LAION front end (48 kHz, hop 480, 64 mels)
WAV_RATE = 44_100  # generated corpus: not the model's 48 kHz, so every clip is resampled
PEER_NAME = "transformers ClapModel"
DISTURBED_PCT = 10.0  # a step during which other processes took more than this is "disturbed"


# ----------------------------------------------------------------------------- machine
def machine_info(device: str) -> dict:
    import torch
    import transformers

    info = cpu_info("cores_per_socket", "sockets", isa=("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"))
    per_socket, sockets = info.pop("cores_per_socket"), info.pop("sockets")
    info["physical_cores"] = int(per_socket) * int(sockets) if f"{per_socket}{sockets}".isdigit() else None
    info |= {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
        gpu |= {"capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
        info["gpu"] = gpu | {"bf16_supported": torch.cuda.is_bf16_supported()}
    return info


# ----------------------------------------------------------------------------- 1. model-only steps
def synthetic_batch(config, batch: int, tokens: int, seed: int, device):
    """Random log-mel features of the config's shape and random token ids (no padding), framed by
    the family's begin/end tokens, as the collate function would give for ``tokens``-token captions."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    channels = 4 if config.fusion else 1
    features = torch.randn(batch, channels, FRAMES, MELS, generator=gen)
    # fused models: every clip long, so that both systems run the fusion branch for every clip (ours
    # always does; transformers' only for long clips, and its BatchNorm fails on a single long one)
    is_longer = torch.full((batch,), bool(config.fusion))
    vocab = int(config.text.config.get("vocab_size", 2048))
    bos, eos = {"roberta": (0, 2), "bert": (2, 3), "clip": (0, 2)}[config.text.type]
    ids = torch.randint(5, vocab, (batch, tokens), generator=gen)
    ids[:, 0], ids[:, -1] = bos, eos
    tensors = {"features": features, "is_longer": is_longer, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return {k: v.to(device) for k, v in tensors.items()}


class StepSystem:
    """One model + AdamW + one batch; ``step()`` runs one full training step and returns seconds."""

    def __init__(self, name: str, config_name: str, model, batch: dict, device, precision: str, peer: bool):
        import torch

        self.name, self.config_name, self.peer = name, config_name, peer
        self.model = model.to(device).train()
        if hasattr(getattr(self.model, "audio", None), "prefer_channels_last"):
            self.model.audio.prefer_channels_last()  # as training/train.py does for CNN towers
        self.batch, self.device, self.precision = batch, device, precision
        self.amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        # the loop's optimiser settings (training/train.py), one group: both systems get the same
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp == torch.float16 else None
        self.times: list[float] = []
        self.other_pct: list[float] = []
        self.params = sum(p.numel() for p in self.model.parameters())
        text_cfg = getattr(getattr(self.model, "text", None), "model", None) or getattr(self.model, "text_model", None)
        self.text_attention = getattr(getattr(text_cfg, "config", None), "_attn_implementation", None)

    def _loss(self):
        import torch

        from training.loss import contrastive_loss

        b = self.batch
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.peer:  # the reference: transformers computes the symmetric CLIP loss itself
                texts = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
                audio = {"input_features": b["features"], "is_longer": b["is_longer"].unsqueeze(-1)}
                return self.model(**texts, **audio, return_loss=True).loss
            audio, text = self.model(b["features"], b["is_longer"], b["input_ids"], b["attention_mask"])
            scale_a, scale_t = self.model.logit_scales()
            return contrastive_loss(audio.float(), text.float(), scale_a, scale_t)

    def step(self) -> float:
        import torch

        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if not torch.isfinite(loss.detach()).item():
            raise FloatingPointError(f"{self.name} {self.precision}: loss is {float(loss)}")
        return dt


def build_systems(
    pair_config: str, solo_config: str, batch: int, tokens: int, seed: int, device, precision: str
) -> list[StepSystem]:
    from training.models.config import load_config
    from training.models.factory import create_model
    from training.random_init import build_clap_model

    pair, solo = load_config(pair_config), load_config(solo_config)
    pair_batch = synthetic_batch(pair, batch, tokens, seed, device)
    solo_batch = synthetic_batch(solo, batch, tokens, seed, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            StepSystem(name, config_name, build(config, seed=seed), step_batch, device, precision, peer=peer)
            for name, config_name, build, config, step_batch, peer in (
                (f"ours {pair_config}", pair_config, create_model, pair, pair_batch, False),
                (f"{PEER_NAME} {pair_config}", pair_config, build_clap_model, pair, pair_batch, True),
                (f"ours {solo_config}", solo_config, create_model, solo, solo_batch, False),
            )
        ]


def time_model_steps(systems: list[StepSystem], warmup: int, steps: int, quiet: float) -> None:
    """Warm-up, then ``steps`` rounds of one timed step per system, in a rotating order (so that
    no system always runs right after the same neighbour); each step after a quiet wait."""
    import torch

    for system in systems:
        for _ in range(warmup):
            system.step()
        if system.device.type == "cuda":  # one more step, for the memory a step needs on top of
            torch.cuda.reset_peak_memory_stats()  # what is resident (all systems' weights + AdamW state)
            resident = torch.cuda.memory_allocated()
            system.step()
            system.step_gib = (torch.cuda.max_memory_allocated() - resident) / 2**30
    for rnd in range(steps):
        k = rnd % len(systems)
        for system in systems[k:] + systems[:k]:
            wait_quiet(quiet)
            time.sleep(0.05)  # let the previous system's worker threads stop spinning
            with CpuMonitor() as monitor:
                dt = system.step()
            system.times.append(dt)
            system.other_pct.append(monitor.other_pct)


def model_rows(systems: list[StepSystem], batch: int) -> list[dict]:
    rows = []
    for s in systems:
        median = statistics.median(s.times)
        row = {"system": s.name, "config": s.config_name, "precision": s.precision, "peer": s.peer}
        row |= {"params_m": round(s.params / 1e6, 1), "text_attention": s.text_attention}
        row |= {"clips_per_s": round(batch / median, 4), "step_ms_median": round(1000 * median, 1)}
        row |= {"step_ms": [round(1000 * t, 1) for t in s.times]}
        row |= {"clips_per_s_mean": round(batch * len(s.times) / sum(s.times), 4)}
        row |= {"other_load_pct": [round(p, 1) for p in s.other_pct]}
        row |= {"disturbed_steps": sum(p > DISTURBED_PCT for p in s.other_pct)}
        if hasattr(s, "step_gib"):
            row["step_memory_gib"] = round(s.step_gib, 2)  # GPU peak during a step above the resident memory
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- 2. end to end
CAPTION_ENDINGS = [
    "",
    " in the distance",
    " close to the microphone",
    " with a lot of echo",
    " outdoors on a windy day",
]
CAPTION_ENDINGS.append(" in a small room")


def write_corpus(folder: Path, files: int, records: int, seed: int) -> tuple[Path, list[float]]:
    """``files`` mono 16-bit WAVs of 3-15 s at 44.1 kHz (``common.synth``: tones over noise) and a
    JSONL manifest of ``records`` lines (files repeated, with other captions, when records > files)."""
    import soundfile as sf

    from training.random_init import TOKENIZER_CORPUS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # evenly spread lengths, shuffled: about half the clips are longer than the 10 s window
    lengths = rng.permutation(np.linspace(3.0, 15.0, files))
    for i, seconds in enumerate(lengths):
        wave = synth(rng, int(seconds * WAV_RATE), WAV_RATE)[:, 0]
        sf.write(folder / f"clip{i:03d}.wav", wave, WAV_RATE, subtype="PCM_16")
    lines = []
    for r in range(records):
        caps = [
            TOKENIZER_CORPUS[(r * 7 + k) % len(TOKENIZER_CORPUS)] + CAPTION_ENDINGS[(r + k) % len(CAPTION_ENDINGS)]
            for k in range(2)
        ]
        lines.append(json.dumps({"audio": f"clip{r % files:03d}.wav", "captions": caps}))
    manifest = folder / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, [float(x) for x in lengths]


def run_loop(manifest: Path, out_dir: Path, loop: dict, batch: int, workers: int, precision: str) -> dict:
    """One real training run (``loop``: model, steps, log_every, device, seed); clips/s and data-wait
    share over the log windows after the first (worker start-up, first-step allocations)."""
    from training.train import train
    from training.train_config import TrainConfig

    steps = loop["steps"]
    cfg = dict(model=loop["model"], train_manifest=str(manifest), out_dir=str(out_dir), batch_size=batch)
    # max_steps above what we run + stop_after_steps: the same loop, but no final checkpoint to write
    cfg |= dict(max_steps=steps * 10, warmup_steps=2, workers=workers, log_every=loop["log_every"], progress=False)
    cfg |= dict(eval_every=10**9, save_every=10**9, device=loop["device"], precision=precision, seed=loop["seed"])
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        train(TrainConfig(**cfg), stop_after_steps=steps)
    wall = time.perf_counter() - t0
    windows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    windows = [w for w in windows if "clips_per_s" in w]
    ends = [w["step"] for w in windows]
    clips = [(end - start) * batch for start, end in zip([0, *ends], ends)]
    seconds = [c / w["clips_per_s"] for c, w in zip(clips, windows)]
    used = slice(1 if len(windows) > 1 else 0, None)
    timed_s = sum(seconds[used])
    wait_s = sum(w["data_wait_share"] * t for w, t in zip(windows[used], seconds[used]))
    run = {"workers": workers, "precision": precision, "clips_per_s": round(sum(clips[used]) / timed_s, 4)}
    run |= {"data_wait_share": round(wait_s / timed_s, 4), "steps_timed": sum(clips[used]) // batch}
    run |= {"warmup_window_skipped": len(windows) > 1, "wall_s": round(wall, 1)}
    shares = ("clips_per_s", "data_wait_share")
    return run | {"windows": [{"step": w["step"]} | {k: round(w[k], 4) for k in shares} for w in windows]}


# ----------------------------------------------------------------------------- report
def print_report(results: dict) -> None:
    m, cfg = results["machine"], results["config"]
    gpu = f"; GPU {m['gpu']['name']}" if "gpu" in m else ""
    print(
        f"\nmachine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m.get('physical_cores')} cores), "
        f"torch {m['versions']['torch']} with {m['torch_threads']} threads{gpu}; device {cfg['device']}"
    )
    if "model_only" in results:
        mo = results["model_only"]
        print(
            f"\nmodel-only training step (forward + symmetric contrastive loss + backward + AdamW), synthetic "
            f"batch of {cfg['batch']} clips x (C, {FRAMES}, {MELS}) + {cfg['tokens']} tokens; clips/s = batch / "
            f"median of {cfg['steps']} steps after {cfg['warmup']} warm-up"
        )
        print_head(
            f"{'system':46s} {'prec':>5s} {'params':>7s} {'step ms':>9s} {'clips/s':>9s} {'x peer':>8s} "
            f"{'other load':>10s}"
        )
        for row in mo["rows"]:
            ratio = mo["ratio_ours_vs_peer"].get(row["precision"])
            rel = f"{ratio:.2f}x" if ratio else "-"
            rel = "1.00x" if row["peer"] else rel if row["config"] == cfg["pair_config"] else "no peer"
            print(
                f"{row['system']:46s} {row['precision']:>5s} {row['params_m']:6.1f}M {row['step_ms_median']:9.1f} "
                f"{row['clips_per_s']:9.3f} {rel:>8s} {max(row['other_load_pct'], default=0):9.0f}%"
            )
        for prec, ratio in mo["ratio_ours_vs_peer"].items():
            detail = mo["ratio_detail"][prec]
            print(
                f"ours / {PEER_NAME} ({cfg['pair_config']}, {prec}): {ratio:.3f}x clips/s (>1: ours faster; "
                f"median of the per-round ratios {', '.join(f'{x:.2f}' for x in detail['per_round'])}; "
                f"ratio of the medians {detail['ratio_of_medians']:.3f}x)"
            )
        print(f"{cfg['solo_config']}: no reference implementation exists, absolute numbers only")
    if "end_to_end" in results:
        e = results["end_to_end"]
        print(
            f"\nend to end: training.train.train, {e['model']}, batch {e['batch']}, {e['records']} records over "
            f"{e['files']} WAV files ({min(e['lengths_s']):.0f}-{max(e['lengths_s']):.0f} s, {WAV_RATE} Hz); "
            f"steps {e['log_every'] + 1}-{e['steps']} (first log window skipped)"
        )
        print_head(
            f"{'workers':>7s} {'prec':>5s} {'clips/s':>9s} {'step ms':>9s} {'data wait':>10s} "
            f"{'wait ms/step':>12s} {'other load':>10s}"
        )
        for run in e["runs"]:
            step_ms = 1000 * e["batch"] / run["clips_per_s"]
            print(
                f"{run['workers']:7d} {run['precision']:>5s} {run['clips_per_s']:9.3f} {step_ms:9.1f} "
                f"{100 * run['data_wait_share']:9.1f}% {run['data_wait_share'] * step_ms:12.1f} "
                f"{run['other_load_pct']:9.0f}%"
            )
    for note in results["notes"]:
        print(f"note: {note}")
    load = results["contention"]
    busy = load["disturbed_blocks"] or load["other_load_pct"] > DISTURBED_PCT
    print_contention(load, f"disturbed timed blocks: {load['disturbed_blocks']}", busy=busy)


# ----------------------------------------------------------------------------- main
# options whose default depends on the run: name -> (CPU, CUDA, --quick)
SIZED = {"batch": (8, 64, 2), "warmup": (1, 3, 1), "steps": (5, 20, 2), "wait_quiet": (20.0, 20.0, 0.0)}
SIZED |= {"e2e_steps": (10, 30, 4), "e2e_log_every": (2, 10, 1), "e2e_files": (64, 64, 8)}
ZERO_IS_A_VALUE = ("warmup", "wait_quiet")  # the others take their default when given 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: micro / micro-cnn-bert, batch 2, 2 steps, 8 short files")
    out = REPO / "bench" / "results-train.json"
    add("--json", "--out", dest="json", type=Path, default=out, help="results JSON (default bench/results-train.json)")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--precisions", help="model-step precisions, comma separated (default: fp32 on CPU; fp32,bf16,fp16 on CUDA)")
    add("--batch", type=int, help="clips per step (default 8 on CPU, 64 on CUDA; quick 2)")
    add("--tokens", type=int, default=16, help="tokens per synthetic caption (default 16)")
    add("--warmup", type=int, help="untimed steps per system (default 1; CUDA 3)")
    add("--steps", type=int, help="timed steps per system (default 5; CUDA 20; quick 2)")
    add("--parts", default="model,e2e", help="which parts to run: model, e2e or both")
    add("--workers", help="DataLoader worker counts for the loop (default 0,1,2; CUDA also 4,8 up to the CPU count)")
    add("--e2e-model", help="registry config for the loop (default cnn10-minilm; quick micro-cnn-bert)")
    add("--e2e-files", type=int, help="WAV files to generate (default 64; quick 8)")
    add("--e2e-steps", type=int, help="loop steps per run (default 10, CUDA 30; quick 4)")
    add("--e2e-log-every", type=int, help="steps per log window; the first is skipped (default 2, CUDA 10; quick 1)")
    add("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    add("--wait-quiet", type=float, help="max s to wait for idle CPUs before each timed block (default 20; quick 0)")
    add("--work-dir", type=Path, help="keep the corpus and runs here (default: a temporary folder)")
    add("--seed", type=int, default=0)
    return parser


def choose_precisions(parser: argparse.ArgumentParser, args, cuda: bool, notes: list[str]) -> list[str]:
    """The model-step precisions to run: ``--precisions``, or all this device can; what is skipped and why
    goes to ``notes``. The loop runs the fp32 and bf16 ones."""
    import torch

    if args.precisions:
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
        if not set(precisions) <= {"fp32", "bf16", "fp16"}:
            parser.error("--precisions: a comma-separated subset of fp32, bf16, fp16")
    else:
        precisions = ["fp32", "bf16", "fp16"] if cuda else ["fp32"]
    if cuda and "bf16" in precisions and not torch.cuda.is_bf16_supported():
        precisions.remove("bf16")
        notes.append("this GPU does not support bf16: bf16 skipped")
    if not cuda:
        if "fp16" in precisions:
            precisions.remove("fp16")
            notes.append("fp16 autocast + GradScaler is a CUDA mode: skipped on CPU")
        cpu = "--device cpu: GPU runs skipped" if args.device == "cpu" else None
        notes.append(cpu or "no CUDA device: mixed-precision (bf16/fp16) GPU runs skipped")
    if not precisions:
        parser.error("no precision left to run on this device")
    return precisions


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    line_buffered_stdout()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")
    device_name = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    cuda, quick = device_name == "cuda", args.quick
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= {"model", "e2e"} or not parts:
        parser.error("--parts: model, e2e or model,e2e")
    notes: list[str] = []
    precisions = choose_precisions(parser, args, cuda, notes)
    for name, defaults in SIZED.items():
        value = getattr(args, name)
        if value is None or (not value and name not in ZERO_IS_A_VALUE):
            setattr(args, name, defaults[2 if quick else 1 if cuda else 0])
    pair_config, solo_config = ("micro", "micro-cnn-bert") if quick else ("htsat-tiny-roberta", "cnn10-minilm")
    if args.e2e_steps < 2 * args.e2e_log_every:
        parser.error("--e2e-steps must cover at least two log windows (the first is skipped)")
    if args.workers:
        worker_counts = [int(w) for w in args.workers.split(",")]
    else:
        worker_counts = [0, 1, 2] + ([w for w in (4, 8) if w <= (os.cpu_count() or 1)] if cuda else [])

    started = time.perf_counter()
    sizes = {k: getattr(args, k) for k in ("batch", "tokens", "warmup", "steps")}
    results: dict = {
        "command": command_line(argv, "train.py"),
        "machine": machine_info(device_name),
        "load_before": loadavg_figures(),
        "config": {"quick": quick, "device": device_name, "precisions": precisions, **sizes}
        | {"pair_config": pair_config, "solo_config": solo_config, "seed": args.seed, "wait_quiet_s": args.wait_quiet}
        | {"parts": sorted(parts)},
    }
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    busy_blocks = 0
    with CpuMonitor(children=True) as monitor:  # our DataLoader workers count as ours
        if "model" in parts:
            results["model_only"], busy = model_part(results["config"], torch.device(device_name), notes)
            busy_blocks += busy
        if "e2e" in parts:
            loop = dict(model=args.e2e_model or solo_config, steps=args.e2e_steps, log_every=args.e2e_log_every)
            loop |= dict(device=device_name, seed=args.seed)
            loop_precisions = [p for p in precisions if p in ("fp32", "bf16")] or ["fp32"]
            results["end_to_end"], busy = e2e_part(args, loop, loop_precisions, worker_counts, results)
            busy_blocks += busy
    results["contention"] = {**monitor.summary(), "disturbed_blocks": busy_blocks}
    results["load_after"] = loadavg_figures()
    results["notes"] = notes
    results["elapsed_s"] = round(time.perf_counter() - started, 1)

    print_report(results)
    write_results(args.json, results)
    return 0


def model_part(cfg: dict, device, notes: list[str]) -> tuple[dict, int]:
    """Part 1, every precision: ours and the peer on the pair config, ours alone on the solo config.
    Returns the results' ``model_only`` and the number of disturbed steps."""
    import torch

    pair_config, solo_config = cfg["pair_config"], cfg["solo_config"]
    batch, steps, warmup = cfg["batch"], cfg["steps"], cfg["warmup"]
    rows: list[dict] = []
    ratios: dict[str, float] = {}
    ratio_detail: dict[str, dict] = {}
    busy_blocks = 0
    for precision in cfg["precisions"]:
        print(f"building {pair_config} (ours + {PEER_NAME}) and {solo_config}, {precision} ...")
        systems = build_systems(pair_config, solo_config, batch, cfg["tokens"], cfg["seed"], device, precision)
        print(f"timing model steps ({warmup} warm-up + {steps} per system, batch {batch}) ...")
        try:
            time_model_steps(systems, warmup, steps, cfg["wait_quiet_s"])
            new = model_rows(systems, batch)
            # round by round (the two steps ran back to back), median: robust to the machine's
            # speed drifting over minutes, which a ratio of two medians is not
            paired = [p / o for o, p in zip(systems[0].times, systems[1].times)]
        except torch.cuda.OutOfMemoryError as exc:  # a big --batch on a small GPU: report, go on
            notes.append(f"{precision}: out of GPU memory at batch {batch}: {str(exc).splitlines()[0]}")
            continue
        finally:
            del systems
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows += new
        ratios[precision] = round(statistics.median(paired), 4)
        ours, peer = new[0]["clips_per_s"], new[1]["clips_per_s"]  # model_rows keeps build_systems' order
        ratio_detail[precision] = {
            "per_round": [round(x, 4) for x in paired],
            "ratio_of_medians": round(ours / peer, 4),
        }
        busy_blocks += sum(r["disturbed_steps"] for r in new)
    peer_attn = next((r["text_attention"] for r in rows if r["peer"]), None)
    ours_attn = next((r["text_attention"] for r in rows if r["config"] == pair_config and not r["peer"]), None)
    if peer_attn != ours_attn:
        notes.append(
            f"text attention: ours {ours_attn}, {PEER_NAME} {peer_attn} (transformers' defaults "
            f"for RobertaModel and ClapTextModel)"
        )
    return {
        "rows": rows,
        "ratio_ours_vs_peer": ratios,
        "ratio_detail": ratio_detail,
        "peer": f"{PEER_NAME}(input_ids, attention_mask, input_features, is_longer, "
        f"return_loss=True) from training.random_init.build_clap_model",
        "no_peer": {solo_config: "no reference implementation: absolute numbers only"},
    }, busy_blocks


def e2e_part(args, loop: dict, precisions: list[str], worker_counts: list[int], results: dict) -> tuple[dict, int]:
    """Part 2: the real loop on a generated corpus, per precision and DataLoader worker count
    (``loop``: ``run_loop``'s). Returns the results' ``end_to_end`` and the number of disturbed runs."""
    busy_blocks, files, batch = 0, args.e2e_files, args.batch
    with work_folder(args.work_dir, "clap-bench-train-") as work:
        records = max(files, batch * (loop["steps"] + 1))
        print(f"writing {files} WAV files (3-15 s, {WAV_RATE} Hz), {records} records ...")
        manifest, lengths = write_corpus(work / "corpus", files, records, loop["seed"])
        runs = []
        for precision in precisions:
            for workers in worker_counts:
                print(f"training {loop['model']}: {loop['steps']} steps, workers={workers}, {precision} ...")
                out_dir = work / f"run-{precision}-w{workers}"
                shutil.rmtree(out_dir, ignore_errors=True)
                wait_quiet(args.wait_quiet)
                with CpuMonitor(children=True) as run_monitor:  # DataLoader workers are ours
                    run = run_loop(manifest, out_dir, loop, batch=batch, workers=workers, precision=precision)
                run["other_load_pct"] = round(run_monitor.other_pct, 1)
                busy_blocks += run_monitor.other_pct > DISTURBED_PCT
                runs.append(run)
    rows = results.get("model_only", {}).get("rows", [])
    model_only = {r["precision"]: r["clips_per_s"] for r in rows if r["config"] == loop["model"] and not r["peer"]}
    e2e = {"model": loop["model"], "batch": batch, "files": files, "records": records}
    e2e |= {"lengths_s": [round(x, 2) for x in lengths], "sample_rate": WAV_RATE}
    e2e |= {"steps": loop["steps"], "log_every": loop["log_every"], "runs": runs, "model_only_clips_per_s": model_only}
    return e2e, busy_blocks


if __name__ == "__main__":
    sys.exit(main())
