#!/usr/bin/env python
"""Fused CLAP on long files (issue 18, item 2): ours vs transformers and laion_clap, SAME random weights.

    python bench/fused.py                 # full run: HTSAT-tiny fusion, 8 files x 60 s, batch 1, ~6 min on 2 cores
    python bench/fused.py --quick         # smoke run: micro model, 2 files x 15 s, no laion_clap, < 1 min
    python bench/fused.py --work-dir /tmp/fused-bench --reuse   # keep and reuse the exported model folder

Systems, each from the WAV file on disk to a unit vector, one call per file (batch 1):

* ours fp32 (and ours int8, ``--variants``): ``write_model_folder`` of the model (fusion front end,
  HTK mel), ``ClapEncoder.embed_files``;
* transformers fp32: soundfile -> ``ClapFeatureExtractor(truncation="fusion")`` -> ``ClapModel`` eager
  (``bench/_fused_peers.py``);
* laion_clap fp32: its ``CLAP_Module.get_audio_embedding_from_filelist`` with the same weights
  (``bench/_laion.py``; skipped with a message when laion_clap is not installed, and in --quick,
  since laion_clap builds only its own HTSAT sizes).

The peers' random fusion chunks are pinned to our fixed ones (``pinned_chunks``), so all three see
the same views and their vectors are compared (max |diff| to transformers). Each system is timed in
its own block, in a rotating order, after waiting for quiet CPUs; disturbed blocks are re-run
(``machine.Undisturbed``). A second pass times each system's stages (decode / front end / network)
one file at a time. Targets: ours >= 2x laion_clap and >= 1.5x transformers, clips/s, for fp32 and
for the fastest of our variants whose vectors keep a cosine >= 0.999 to transformers'.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fused_peers  # noqa: E402
import _laion  # noqa: E402
import embed  # noqa: E402
from common import command_line, print_contention, print_head, print_targets, quiet_logs, target, work_folder  # noqa: E402
from machine import CpuMonitor, Undisturbed, cpu_info, loadavg_figures, write_results  # noqa: E402

SAMPLE_RATE = 48_000
TARGETS = {"vs_laion": 2.0, "vs_transformers": 1.5, "max_abs_diff": 1e-4, "fast_min_cosine": 0.999}
OURS, HF, LAION = "ours fp32", _fused_peers.EagerFusedPeer.name, _laion.LaionPeer.name
STAGES = ("decode", "front_end", "network")


def build_model(quick: bool, seed: int):
    """Random fused ClapModel: transformers' HTSAT-tiny audio tower (micro with --quick) and a
    micro text tower (this benchmark never embeds text)."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    torch.manual_seed(seed)
    if quick:
        micro = dict(
            patch_embeds_hidden_size=16, depths=[1, 1, 2, 1], num_attention_heads=[1, 2, 4, 8], hidden_size=128
        )
        audio = ClapAudioConfig(enable_fusion=True, **micro)
    else:
        audio = ClapAudioConfig(enable_fusion=True)
    text = ClapTextConfig(
        vocab_size=2048, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return ClapModel(ClapConfig(audio_config=audio.to_dict(), text_config=text.to_dict())).eval()


def export_ours(model, work: Path, quick: bool, seed: int, reuse: bool, variants: tuple[str, ...] = ("fp32",)) -> Path:
    """Our model folder of ``model`` through the project's export path (fp32); with ``reuse``, the
    folder an earlier run with the same settings wrote."""
    from indexer.models.manifest import AudioFrontend
    from training.convert import ConvertedModel
    from training.export import write_model_folder

    folder, stamp_file = work / "ours", work / "stamp.json"
    stamp = {"quick": quick, "seed": seed, "bench": "fused", "variants": list(variants)}
    if reuse and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        print("reusing the exported model folder in", work, flush=True)
        return folder
    stamp_file.unlink(missing_ok=True)
    print(f"exporting our model folder ({', '.join(variants)}) ...", flush=True)
    frontend = AudioFrontend(mel_scale="htk", mel_norm=None, long_policy="fusion", f_min=50, f_max=14_000)
    converted = ConvertedModel(
        model=model,
        frontend=frontend,
        audio_architecture="htsat-tiny",
        text_architecture="roberta",
        tokenizer_dir=embed.ensure_tokenizer(None, work),
        max_text_length=77,
        source="random",
        source_format="hf_clap",
        source_sha256=None,
    )
    with quiet_logs():
        write_model_folder(converted, folder, variants=variants, overwrite=True)
    stamp_file.write_text(json.dumps(stamp))
    return folder


def make_long_clips(folder: Path, count: int, seconds: float, seed: int) -> list[Path]:
    """``count`` mono 48 kHz 16-bit WAV files of ``seconds``: ``embed.make_clips``' 10 s clips (tones
    with envelopes over coloured noise) joined end to end, so the global and local views all differ."""
    import soundfile as sf

    pieces = math.ceil(seconds / 10)
    parts = embed.make_clips(folder / "parts", count * pieces, seed)
    paths = []
    for i in range(count):
        wave = np.concatenate([sf.read(str(p), dtype="int16")[0] for p in parts[i * pieces : (i + 1) * pieces]])
        paths.append(folder / f"long_{i:03d}.wav")
        sf.write(str(paths[-1]), wave[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
    return paths


class Ours(embed.Ours):
    """``ClapEncoder`` of our model folder (one variant), with its stages timed one by one."""

    def __init__(self, folder: Path, threads: int | None, variant: str = "fp32"):
        super().__init__(folder, variant, threads)

    def stages(self, path: Path) -> tuple[object, object, object]:
        """(decode, front end, network) for one file: ``embed_files``' steps, each on its own."""
        from indexer.audio.decode import open_audio
        from indexer.audio.views import reader_views

        spec, box = self.encoder.manifest.audio_frontend, {}

        def decode():
            box["source"] = open_audio(path, spec.sample_rate)

        def front_end():
            with box.pop("source") as source:
                box["views"] = reader_views(source.read, source.num_samples, spec)

        def network():
            return self.encoder.embed_views([box["views"]])

        return decode, front_end, network


# ----------------------------------------------------------------------------- timing
def time_files(systems: list, paths: list[Path], repeats: int, run: Undisturbed) -> tuple[dict, dict]:
    """clips/s per system at batch 1 (median over ``repeats`` blocks, rotating order) and its vectors."""
    for system in systems:  # warm-up: first-call allocations, shape-specific caches
        system.embed_files(paths[:1])
    rates: dict[str, list[float]] = defaultdict(list)
    vectors: dict[str, np.ndarray] = {}
    for rep in range(repeats):
        for system in systems[rep % len(systems) :] + systems[: rep % len(systems)]:

            def block(system=system):
                t0 = time.perf_counter()
                out = [system.embed_files([p]) for p in paths]
                return time.perf_counter() - t0, np.concatenate(out)

            seconds, vectors[system.name] = run(block)
            rates[system.name].append(len(paths) / seconds)
    rows = {n: {"clips_per_s": statistics.median(r), "runs": [round(x, 3) for x in r]} for n, r in rates.items()}
    return rows, vectors


def time_stages(systems: list, paths: list[Path], run: Undisturbed) -> dict:
    """Median ms per file of each system's decode / front end / network, one file at a time."""
    out = {}
    for system in systems:

        def block(system=system):
            times = defaultdict(list)
            for path in paths:
                for stage, step in zip(STAGES, system.stages(path)):
                    t0 = time.perf_counter()
                    step()
                    times[stage].append(1000 * (time.perf_counter() - t0))
            return times

        times = run(block)
        out[system.name] = {stage: round(statistics.median(times[stage]), 1) for stage in STAGES}
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def measure(systems: list, paths: list[Path], cfg: dict, results: dict) -> None:
    run = Undisturbed(cfg["wait_quiet_s"])
    with CpuMonitor() as monitor, _fused_peers.pinned_chunks():
        print(f"timing {len(systems)} systems on {len(paths)} files at batch 1 ...", flush=True)
        audio, vectors = time_files(systems, paths, cfg["repeats"], run)
        print("timing the stages ...", flush=True)
        stages = time_stages(systems, paths, run)
        together = systems[0].embed_files(paths)  # ours, all files in one call
    results["contention"] = {
        **monitor.summary(),
        "blocks_retried": run.retried,
        "disturbed_blocks_kept": run.kept_disturbed,
    }
    results["load_after"] = loadavg_figures()
    ref = unit(vectors[HF])
    for name, row in audio.items():
        row["stages_ms"] = stages[name]
        row["stages_total_ms"] = round(sum(stages[name].values()), 1)
        row["max_abs_diff_to_transformers"] = float(np.abs(unit(vectors[name]) - ref).max())
        row["min_cosine_to_transformers"] = float(np.sum(unit(vectors[name]) * ref, axis=1).min())
    results["audio"] = audio
    results["ours_batch_1_vs_all_max_abs_diff"] = float(np.abs(vectors[OURS] - together).max())


def evaluate(results: dict) -> list[dict]:
    audio, checks = results["audio"], []
    ours = audio[OURS]
    for peer, key in ((LAION, "vs_laion"), (HF, "vs_transformers")):
        if peer not in audio:
            checks.append(target(f"ours >= {TARGETS[key]}x {peer}", results.get("laion_skipped", "not run"), False))
            continue
        ratio = ours["clips_per_s"] / audio[peer]["clips_per_s"]
        checks.append(target(f"ours >= {TARGETS[key]}x {peer}, batch 1", f"{ratio:.2f}x", ratio >= TARGETS[key]))
    diff = ours["max_abs_diff_to_transformers"]
    checks.append(
        target(f"ours max |diff| to transformers <= {TARGETS['max_abs_diff']:g}", f"{diff:.2e}", diff <= 1e-4)
    )
    same = results["ours_batch_1_vs_all_max_abs_diff"]
    checks.append(target("ours: same vector alone and in a batch", f"max |diff| {same:.1e}", same == 0.0))
    close = [n for n in audio if n.startswith("ours ") and audio[n]["min_cosine_to_transformers"] >= 0.999]
    fastest = max(close, key=lambda n: audio[n]["clips_per_s"]) if close else None
    if fastest and fastest != OURS and LAION in audio:
        row = audio[fastest]
        ratio = row["clips_per_s"] / audio[LAION]["clips_per_s"]
        by_stages = audio[LAION]["stages_total_ms"] / row["stages_total_ms"]
        checks.append(
            target(
                f"fastest ours variant (cosine >= {TARGETS['fast_min_cosine']} to transformers) >= "
                f"{TARGETS['vs_laion']}x {LAION}, batch 1",
                f"{fastest}: {ratio:.2f}x clips/s, {by_stages:.2f}x on stage sums, "
                f"min cosine {row['min_cosine_to_transformers']:.5f}",
                ratio >= TARGETS["vs_laion"],
            )
        )
    return checks


def print_report(results: dict) -> None:
    cfg, audio = results["config"], results["audio"]
    print(
        f"\nmachine: {results['machine']['cpu']}, {results['machine']['logical_cpus']} logical CPUs; "
        f"load avg before/after {results['load_before']} / {results['load_after']}"
    )
    print(
        f"{cfg['files']} WAV x {cfg['seconds']:g} s @ 48 kHz, batch 1, median of {cfg['repeats']} passes; {cfg['model']}"
    )
    print_head(
        f"{'system':18s} {'clips/s':>8s} {'ms/clip':>8s} {'x laion':>8s} {'x hf':>6s} {'decode':>7s} "
        f"{'front':>7s} {'network':>8s} {'max|diff| hf':>13s}"
    )
    for name, row in audio.items():
        rate, st = row["clips_per_s"], row["stages_ms"]
        vs_laion = f"{rate / audio[LAION]['clips_per_s']:7.2f}x" if LAION in audio else f"{'-':>8s}"
        print(
            f"{name:18s} {rate:8.2f} {1000 / rate:8.1f} {vs_laion} {rate / audio[HF]['clips_per_s']:5.2f}x "
            f"{st['decode']:7.1f} {st['front_end']:7.1f} {st['network']:8.1f} {row['max_abs_diff_to_transformers']:13.2e}"
        )
    print("(stage columns: median ms per file, each stage timed on its own)")
    totals = {name: row["stages_total_ms"] for name, row in audio.items()}
    print(
        "ratios from the stage sums (less exposed to other processes than the clips/s blocks): "
        + ", ".join(f"ours vs {n} {t / totals[OURS]:.2f}x" for n, t in totals.items() if n != OURS)
    )
    if "laion_skipped" in results:
        print(results["laion_skipped"])
    elif results.get("laion_stand_ins"):
        print("laion_clap ran with stand-ins for: " + ", ".join(results["laion_stand_ins"]) + " (see bench/_laion.py)")
    print_targets(results["targets"], cfg["quick"])
    load = results["contention"]
    print_contention(
        load,
        f"timed blocks re-run: {load['blocks_retried']}, kept although disturbed: {load['disturbed_blocks_kept']}",
        busy=load["disturbed_blocks_kept"] or load["other_load_pct"] > 10,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: micro model, 2 short files, no laion_clap")
    parser.add_argument("--out", type=Path, default=Path("bench/results_fused.json"), help="results JSON")
    parser.add_argument("--files", type=int, default=None, help="number of files (default 8; quick 2)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each file (default 60; quick 15)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per system (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own)")
    parser.add_argument("--no-laion", action="store_true", help="skip the laion_clap peer")
    parser.add_argument("--variants", default="fp32,int8", help="our precision variants to time (fp32 always)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the model folder and clips here")
    parser.add_argument("--reuse", action="store_true", help="with --work-dir: reuse an earlier run's export")
    parser.add_argument(
        "--wait-quiet", type=float, default=None, help="wait up to this many s for idle CPUs (30; quick 0)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    cfg = {
        "quick": quick,
        "files": args.files or (2 if quick else 8),
        "seconds": args.seconds or (15.0 if quick else 60.0),
        "repeats": args.repeats or (1 if quick else 3),
        "wait_quiet_s": args.wait_quiet if args.wait_quiet is not None else (0.0 if quick else 30.0),
        "threads": args.threads,
        "seed": args.seed,
        "model": "micro fused model (smoke run)" if quick else "HTSAT-tiny fusion (aff_2d), random weights",
    }
    import torch

    started = time.perf_counter()
    info = cpu_info("cores_per_socket", "threads_per_core")
    results: dict = {"command": command_line(argv, "fused.py"), "machine": info, "load_before": loadavg_figures()}
    results["config"] = cfg
    with work_folder(args.work_dir, "clap-fused-") as work:
        model = build_model(quick, args.seed)
        variants = tuple(dict.fromkeys(("fp32", *(v.strip() for v in args.variants.split(",") if v.strip()))))
        folder = export_ours(model, work, quick, args.seed, args.reuse, variants)
        systems: list = [Ours(folder, args.threads, v) for v in variants]
        systems.append(_fused_peers.EagerFusedPeer(model, torch.get_num_threads()))
        skip = "--no-laion given" if args.no_laion else _laion.unavailable()
        if quick and skip is None:
            skip = "quick run: laion_clap builds only its own HTSAT sizes, not the micro model; skipping that peer"
        if skip is None:
            print("building the laion_clap peer ...", flush=True)
            laion = _laion.LaionPeer(model, torch.get_num_threads())
            results["laion_stand_ins"] = laion.stand_ins
            systems.append(laion)
        else:
            results["laion_skipped"] = skip
            print(skip, flush=True)
        paths = make_long_clips(work / "clips", cfg["files"], cfg["seconds"], args.seed)
        measure(systems, paths, cfg, results)
    results["targets"] = evaluate(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_report(results)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
