#!/usr/bin/env python
"""Ingest pipeline benchmark: ``indexer ingest`` against the pure decode+embed path of the same
files, no-change re-runs of a large library, and the peak memory of an ingest (the shipped default
model, or ``--model``). How each part is measured: bench/README.md; results: bench/RESULTS.md.

    python bench/ingest.py                              # full run, ~30-40 min on 2 cores -> bench/results_ingest.json
    python bench/ingest.py --quick                      # smoke run, small sizes (used by tests/bench/test_ingest.py)
    python bench/ingest.py --parts throughput --files 200 --rounds 3
    python bench/ingest.py --parts rerun --rerun-files 10000
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import command_line, print_head, print_targets, synth, target  # noqa: E402
from machine import (  # noqa: E402
    CpuMonitor,
    cpu_info,
    git,
    line_buffered_stdout,
    loadavg_figures,
    own_cpu,
    wait_quiet,
    write_results,
)

TARGETS = {"overhead": 0.15, "rerun_s": 30.0, "peak_rss_gb": 2.0}
DISTURBED_PCT = 15.0
GB = float(1 << 30)
PEER = "peer embed_files"


# ----------------------------------------------------------------------------- noise control
def contention(mon: CpuMonitor) -> dict:
    """A ``CpuMonitor(children=True)``'s record, our children's CPU (the CLI runs) apart."""
    cpu = {"self_cpu_s": mon.self_cpu, "children_cpu_s": mon.children_cpu, "other_processes_cpu_s": mon.other}
    record = {"wall_s": round(mon.wall, 3)} | {k: round(v, 2) for k, v in cpu.items()}
    return record | {"other_load_pct": round(mon.other_pct, 1)}


def timed_block(fn, *, quiet_s: float, retries: int, label: str) -> tuple[object, dict]:
    """Run ``fn()`` under a CpuMonitor, re-running it while other processes disturbed it; keeps the
    least disturbed attempt. Returns (fn's result, monitor summary + attempts)."""
    best = None
    for attempt in range(retries + 1):
        waited = wait_quiet(quiet_s)
        with CpuMonitor(children=True) as mon:
            out = fn()
        summary = {**contention(mon), "waited_for_quiet_s": round(waited, 1), "attempt": attempt + 1}
        if best is None or summary["other_load_pct"] < best[1]["other_load_pct"]:
            best = (out, summary)
        if summary["other_load_pct"] <= DISTURBED_PCT:
            break
        then = "re-running" if attempt < retries else "kept"
        print(f"    ({label}: other processes took {summary['other_load_pct']:.0f}% of the CPUs, {then})")
    best[1]["attempts"] = attempt + 1
    return best


# ----------------------------------------------------------------------------- memory sampling
class TreeSampler(threading.Thread):
    """Peak RSS of a process and all its descendants, sampled every ``interval`` seconds: the summed
    RSS (shared library pages count once per process, so it over-states the footprint), the largest
    single process and, every 10th sample, the summed PSS."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self.psutil, self.root, self.interval = psutil, psutil.Process(pid), interval
        self.stop = threading.Event()
        self.peak_tree = self.peak_single = self.peak_pss = self.peak_procs = self.samples = 0

    def run(self) -> None:
        ps = self.psutil
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except ps.Error:
                break
            total, pss = 0, 0
            want_pss = self.samples % 10 == 0
            for p in procs:
                try:
                    if want_pss:
                        full = p.memory_full_info()
                        rss, pss = full.rss, pss + getattr(full, "pss", full.rss)
                    else:
                        rss = p.memory_info().rss
                except ps.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak_tree = max(self.peak_tree, total)
            if want_pss:
                self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self.samples += 1
            self.stop.wait(self.interval)

    def result(self) -> dict:
        gb = {"tree_rss": self.peak_tree, "single_rss": self.peak_single, "tree_pss": self.peak_pss}
        counts = {"max_processes": self.peak_procs, "samples": self.samples, "interval_ms": round(1000 * self.interval)}
        return {f"peak_{k}_gb": round(v / GB, 3) for k, v in gb.items()} | counts


_REPORT = re.compile(
    r"(?P<found>\d+) files found, (?P<embedded>\d+) embedded \((?P<audio_h>[\d.]+) h of audio\), "
    r"(?P<unchanged>\d+) unchanged, (?P<failed>\d+) failed, (?P<removed>\d+) removed in (?P<reported_s>[\d.]+) s"
)
_INDEX = re.compile(r"(files|segments) index \S+: (\w+), (\d+) vectors")


def timed_cli(args: list[str], *, sample_s: float | None, quiet_s: float, label: str, retries: int = 0) -> dict:
    """``run_cli`` in a ``timed_block``; the block's contention record under ``contention``."""
    row, mon = timed_block(lambda: run_cli(args, sample_s=sample_s), quiet_s=quiet_s, retries=retries, label=label)
    row["contention"] = mon
    return row


def run_cli(args: list[str], *, sample_s: float | None, timeout: float = 7200) -> dict:
    """``indexer ARGS`` as a subprocess; wall time (Python start-up included), its report line and,
    when ``sample_s`` is given, the process tree's peak memory."""
    exe = Path(sys.executable).with_name("indexer")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "indexer.cli"]), *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, sample_s) if sample_s else None
    if sampler is not None:
        sampler.start()
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - t0
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}\n{err[-3000:]}")
    row: dict = {"wall_s": round(wall, 3), "command": "indexer " + " ".join(args)}
    m = _REPORT.search(out)
    if m:
        row |= {k: float(v) if k in ("audio_h", "reported_s") else int(v) for k, v in m.groupdict().items()}
    row["index"] = {kind: {"mode": mode, "vectors": int(n)} for kind, mode, n in _INDEX.findall(out)}
    if sampler is not None:
        row["memory"] = sampler.result()
    return row


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict:
    import soundfile

    info = cpu_info("cores_per_socket", "threads_per_core", "hypervisor")
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / GB, 1)
    except ImportError:
        pass
    versions = {"numpy": np.__version__}
    for mod in ("onnxruntime", "soundfile", "soxr", "faiss", "sqlalchemy", "psutil"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            pass
    info["versions"] = versions | {"libsndfile": soundfile.__libsndfile_version__}
    return info


def git_state() -> dict:
    """The commit measured, and whether the indexer code differed from it (other people edit it)."""
    return {
        "head": git("rev-parse", "--short", "HEAD") or None,
        "indexer_modified": [line[3:] for line in git("status", "--porcelain", "--", "indexer").splitlines()],
    }


# ----------------------------------------------------------------------------- audio generation
FORMATS = {  # name -> (extension, soundfile format, subtypes to draw from)
    "wav": (".wav", "WAV", ("PCM_16", "PCM_16", "PCM_24", "FLOAT")),
    "flac": (".flac", "FLAC", ("PCM_16", "PCM_24")),
    "ogg": (".ogg", "OGG", ("VORBIS",)),
    "mp3": (".mp3", "MP3", ("MPEG_LAYER_III",)),
}
FOLDERS = ("ambience", "foley", "impacts", "machines", "nature", "ui", "vehicles", "voices")


def write_blocks(path: Path, wave: np.ndarray, rate: int, sf_format: str, subtype: str) -> None:
    """``sf.write`` in 10 s blocks: libsndfile 1.2's Vorbis encoder crashes (SIGSEGV) when one
    write call hands it more than ~30-60 s of audio."""
    import soundfile as sf

    with sf.SoundFile(str(path), "w", rate, wave.shape[1], format=sf_format, subtype=subtype) as out:
        for start in range(0, wave.shape[0], 10 * rate):
            out.write(wave[start : start + 10 * rate])


def cached_library(folder: Path, stamp: dict, make, complete=lambda data: True) -> dict:
    """A generated library, made once: ``folder/library.json`` records ``make(folder)``'s record
    under ``stamp`` and marks a complete library; another stamp (or an incomplete one) is made anew."""
    marker = folder / "library.json"
    if marker.is_file():
        data = json.loads(marker.read_text())
        if data.get("stamp") == stamp and complete(data):
            return data | {"generated_now": False}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    data = {"stamp": stamp, **make(folder)}
    data["generate_s"] = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps(data, indent=1))
    return data | {"generated_now": True}


def make_library(folder: Path, count: int, seed: int, quick: bool) -> dict:
    """The throughput library: mixed formats, rates and channels, 1-30 s plus a few 2-5 min files."""

    def complete(data: dict) -> bool:
        return all(Path(f["path"]).is_file() for f in data["files"])

    stamp = {"count": count, "seed": seed, "quick": quick, "version": 2}
    return cached_library(folder, stamp, lambda folder: {"files": _write_library(folder, count, seed, quick)}, complete)


def _write_library(folder: Path, count: int, seed: int, quick: bool) -> list[dict]:
    import soundfile as sf

    formats = [f for f in FORMATS if FORMATS[f][1] in sf.available_formats()]
    weights = np.array([{"wav": 0.35, "flac": 0.25, "ogg": 0.2, "mp3": 0.2}[f] for f in formats])
    rng = np.random.default_rng(seed)
    n_long = 0 if quick else max(1, count // 100)
    files = []
    for i in range(count):
        fmt = formats[int(rng.choice(len(formats), p=weights / weights.sum()))]
        ext, sf_format, subtypes = FORMATS[fmt]
        rate = int(rng.choice([16_000, 44_100, 48_000]))
        channels = int(rng.choice([1, 2]))
        seconds = float(rng.uniform(120, 300)) if i < n_long else float(rng.uniform(1, 6 if quick else 30))
        subtype = str(rng.choice(subtypes))
        n = int(seconds * rate) // 2 * 2  # even: libsndfile writes an odd-sized 24-bit mono data chunk unpadded
        sub = folder / FOLDERS[i % len(FOLDERS)]
        sub.mkdir(exist_ok=True)
        path = sub / f"sound_{i:04d}{ext}"
        write_blocks(
            path, synth(np.random.default_rng(seed * 100_003 + i), n, rate, channels), rate, sf_format, subtype
        )
        row = {"path": str(path), "format": fmt, "subtype": subtype, "sample_rate": rate, "channels": channels}
        files.append(row | {"seconds": round(n / rate, 3), "bytes": path.stat().st_size})
    return files


COUNTED = {"sample_rates": "sample_rate", "channels": "channels"}  # summary name -> file record key


def library_summary(lib: dict) -> dict:
    files = lib["files"]
    secs = [f["seconds"] for f in files]
    counts = {key: Counter(f[key] for f in files) for key in ("format", "sample_rate", "channels")}
    summary = {"files": len(files), "audio_s": round(sum(secs), 1), "bytes": sum(f["bytes"] for f in files)}
    summary["formats"] = dict(counts["format"])
    summary |= {name: {str(k): v for k, v in sorted(counts[key].items())} for name, key in COUNTED.items()}
    lengths = {"seconds_min": min(secs), "seconds_median": statistics.median(secs), "seconds_max": max(secs)}
    summary |= {k: round(v, 2) for k, v in lengths.items()} | {"files_over_60s": sum(s > 60 for s in secs)}
    return summary | {"generate_s": lib["generate_s"], "generated_now": lib["generated_now"]}


def make_small_library(folder: Path, count: int, seed: int) -> float:
    """``count`` 0.5-1 s, 16 kHz mono PCM_16 WAV files, 100 per folder; returns seconds taken."""
    import soundfile as sf

    t0 = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    rate = 16_000
    rng = np.random.default_rng(seed)
    base = synth(rng, 4 * rate, rate, 1)[:, 0]
    for i in range(count):
        sub = folder / f"d{i // 100:04d}"
        if i % 100 == 0:
            sub.mkdir(parents=True)
        n = int(rng.integers(rate // 2, rate + 1))
        start = int(rng.integers(0, base.shape[0] - n))
        wave = base[start : start + n] * np.float32(rng.uniform(0.3, 1.0))
        sf.write(str(sub / f"s{i:05d}.wav"), wave, rate, subtype="PCM_16")
    return time.perf_counter() - t0


def make_long_library(folder: Path, minutes: float, seed: int) -> dict:
    """One ``minutes``-long 48 kHz stereo FLAC written in 10 s blocks, plus 3 short files."""

    def make(folder: Path) -> dict:
        import soundfile as sf

        rate, block = 48_000, 10 * 48_000
        total = int(minutes * 60 * rate)
        path = folder / f"long_{minutes:g}min.flac"
        rng = np.random.default_rng(seed)
        with sf.SoundFile(str(path), "w", rate, 2, format="FLAC", subtype="PCM_16") as out:
            for start in range(0, total, block):
                block_rng = np.random.default_rng([seed, start // block % 64])
                out.write(synth(block_rng, min(block, total - start), rate, 2, t0=start / rate))
        for i in range(3):
            sf.write(str(folder / f"short_{i}.wav"), synth(rng, 3 * 44_100, 44_100, 1), 44_100, subtype="PCM_16")
        return {"long_file": str(path), "long_seconds": total / rate, "long_bytes": path.stat().st_size, "files": 4}

    return cached_library(folder, {"minutes": minutes, "seed": seed, "version": 1}, make)


# ----------------------------------------------------------------------------- throughput systems
class _Timer:
    """Accumulates wall time, calls and first start of wrapped calls (from any thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def wrapped(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with self.lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + dt
                    self.calls[name] = self.calls.get(name, 0) + 1
                    self.first.setdefault(name, t0)

        return wrapped


def run_peer(model_dir: Path, paths: list[str]) -> dict:
    """Pure decode + embed: open the model, ``embed_files`` over the paths (its own thread pool, one
    batch ahead of ONNX; no database, no index), timed from opening the model to the last vector."""
    from indexer.models.encoder import ClapEncoder

    timer = _Timer()
    t0 = time.perf_counter()
    enc = ClapEncoder.open(model_dir)
    t_open = time.perf_counter() - t0
    enc.embed_views = timer.wrap("onnx", enc.embed_views)
    enc.views_from_file = timer.wrap("decode", enc.views_from_file)
    out = list(enc.embed_files(paths))
    wall = time.perf_counter() - t0
    errors = [e.path for e in out if e.error is not None]
    del enc
    profile = {"model_open_s": round(t_open, 3), "onnx_s": round(timer.seconds.get("onnx", 0.0), 2)}
    profile["decode_thread_wall_s"] = round(timer.seconds.get("decode", 0.0), 2)
    profile["first_vector_s"] = round(timer.first.get("onnx", t0) - t0 + 0.0, 2)
    files = {"files": len(out) - len(errors), "failed": len(errors), "audio_s": sum(e.duration_s or 0.0 for e in out)}
    return {"wall_s": wall, **files, "profile": profile}


def run_ingest_inprocess(model_dir: Path, library: Path, home: Path, config: dict) -> dict:
    """``run_ingest`` into a fresh home, timed from ``Store.open`` to the return, instrumented from
    outside (wrappers around the encoder's ``embed_views``, the catalogue's writes and lookups and
    ``Store.publish``; CPU of this process and of the reaped decode workers): no change to indexer code."""
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.settings import IndexerSettings
    from indexer.store import catalog
    from indexer.store.store import Store

    shutil.rmtree(home, ignore_errors=True)
    timer = _Timer()
    saved = {name: getattr(catalog, name) for name in ("write_files", "touch_files", "known_files")}
    for name, fn in saved.items():
        setattr(catalog, name, timer.wrap(f"db_{name}", fn))
    cpu0 = own_cpu()
    t0 = time.perf_counter()
    try:
        store = Store.open(IndexerSettings(home=home), model=model_dir)
        open_encoder = store.encoder

        def encoder():
            first = store._encoder is None
            enc = timer.wrap("model_open", open_encoder)()
            if first:
                enc.embed_views = timer.wrap("onnx", enc.embed_views)
            return enc

        store.encoder = encoder
        store.publish = timer.wrap("publish", store.publish)
        report = run_ingest(store, IngestOptions(paths=[str(library)], **config))
        wall = time.perf_counter() - t0
        store.close()
    finally:
        for name, fn in saved.items():
            setattr(catalog, name, fn)
    cpu1 = own_cpu()
    s = timer.seconds
    db = sum(v for k, v in s.items() if k.startswith("db_") and k != "db_known_files")
    onnx, publish, model_open = s.get("onnx", 0.0), s.get("publish", 0.0), s.get("model_open", 0.0)
    stats = report.stats
    profile = {"model_open_s": round(model_open, 3), "first_vector_s": round(timer.first.get("onnx", t0) - t0, 2)}
    profile |= {"onnx_s": round(onnx, 2), "onnx_calls": timer.calls.get("onnx", 0), "db_write_s": round(db, 3)}
    profile |= {"db_lookup_s": round(s.get("db_known_files", 0.0), 3), "publish_s": round(publish, 3)}
    profile["main_not_embedding_s"] = round(wall - onnx - db - publish - model_open, 2)
    profile |= {"main_process_cpu_s": round(cpu1[0] - cpu0[0], 2), "decode_workers_cpu_s": round(cpu1[1] - cpu0[1], 2)}
    files = {"files": stats.embedded, "failed": stats.failed, "skipped": stats.skipped, "audio_s": stats.audio_seconds}
    return {"wall_s": wall, **files, "ingest_reported_s": round(report.seconds, 3), "profile": profile}


def throughput_part(args, model_dir: Path, work: Path, quick: bool, quiet_s: float) -> dict:
    lib_dir = work / "cache" / f"library-{args.files}-s{args.seed}{'-quick' if quick else ''}"
    print(f"library: {args.files} files in {lib_dir} ...")
    lib = make_library(lib_dir, args.files, args.seed, quick)
    summary = library_summary(lib)
    print(
        f"  {summary['files']} files, {summary['audio_s'] / 60:.1f} min of audio, formats {summary['formats']}, "
        f"rates {summary['sample_rates']}, channels {summary['channels']}"
        + (f" (generated in {summary['generate_s']:.0f} s)" if lib["generated_now"] else " (cached)")
    )
    configs = [parse_config(c) for c in args.ingest_configs.split(",") if c.strip()]
    rounds, per_system = throughput_rounds(args, model_dir, lib_dir, lib, work, configs, quiet_s)
    shutil.rmtree(work / "homes" / "throughput", ignore_errors=True)

    table = {name: system_row(runs) for name, runs in per_system.items()}
    default = _ingest_name(configs[0])
    best = {name: row["files_per_s_best"] for name, row in table.items()}
    ratio = best[default] / best[PEER]
    per_round = [row["files_per_s"][default] / row["files_per_s"][PEER] for row in rounds]
    quiet_rounds = [max(row["other_load_pct"][default], row["other_load_pct"][PEER]) <= DISTURBED_PCT for row in rounds]
    clean = [x for x, ok in zip(per_round, quiet_rounds) if ok]
    best_ingest = max((n for n in table if n != PEER), key=best.__getitem__)
    cpu = {name: row["cpu_s_per_file_median"] for name, row in table.items()}
    print(
        f"ratio ingest/peer = {ratio:.3f} (overhead {100 * (1 - ratio):.1f} %; per round "
        + ", ".join(f"{x:.3f}" for x in per_round)
        + "; rounds where neither block was disturbed: "
        + (", ".join(f"{x:.3f}" for x in clean) or "none")
        + ")"
    )
    medians = {name: row["files_per_s_median"] for name, row in table.items()}
    result = {"library": summary, "rounds": rounds, "systems": table, "default_system": default}
    result |= {"ratio_ingest_vs_peer": round(ratio, 4), "overhead": round(1 - ratio, 4)}
    result |= {"ratio_per_round": [round(x, 4) for x in per_round]}
    result |= {"ratio_per_undisturbed_round": [round(x, 4) for x in clean]}
    result |= {"cpu_ratio_peer_vs_ingest": round(cpu[PEER] / cpu[default], 4)}
    result |= {"ratio_of_medians": round(medians[default] / medians[PEER], 4), "best_ingest_config": best_ingest}
    result |= {"ratio_best_config": round(best[best_ingest] / best[PEER], 4)}
    result["statistic"] = f"best of {args.rounds} round(s) per system (highest files/s)"
    return result | {"cli_ingest": cli_ingest(args, lib_dir, work, quiet_s)}


def throughput_rounds(
    args, model_dir: Path, lib_dir: Path, lib: dict, work: Path, configs: list[dict], quiet_s: float
) -> tuple[list[dict], dict[str, list[dict]]]:
    """``--rounds`` rounds of the peer and each ingest configuration, in a rotating order; each
    round's files/s, and every system's runs."""
    paths = sorted(f["path"] for f in lib["files"])
    home = work / "homes" / "throughput"
    runners = {PEER: functools.partial(run_peer, model_dir, paths)} | {
        _ingest_name(c): functools.partial(run_ingest_inprocess, model_dir, lib_dir, home, c) for c in configs
    }
    systems = list(runners)
    rounds = []
    per_system: dict[str, list[dict]] = {name: [] for name in systems}
    for r in range(args.rounds):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        print(f"round {r + 1}/{args.rounds}: {' -> '.join(order)}")
        row = {"round": r + 1, "order": order, "files_per_s": {}, "other_load_pct": {}}
        for name in order:
            out, mon = timed_block(runners[name], quiet_s=quiet_s, retries=args.retries, label=name)
            out.update(
                round=r + 1,
                files_per_s=out["files"] / out["wall_s"],
                audio_s_per_s=out["audio_s"] / out["wall_s"],
                contention=mon,
            )
            out["wall_s"] = round(out["wall_s"], 3)
            per_system[name].append(out)
            row["files_per_s"][name] = round(out["files_per_s"], 3)
            row["other_load_pct"][name] = mon["other_load_pct"]
            print(
                f"  {name:28s} {out['wall_s']:7.1f} s  {out['files_per_s']:6.2f} files/s  "
                f"{out['audio_s_per_s']:6.1f} audio-s/s  (others {mon['other_load_pct']:.0f}% of CPUs)"
            )
        rounds.append(row)
    return rounds, per_system


def cli_ingest(args, lib_dir: Path, work: Path, quiet_s: float) -> dict:
    """``indexer ingest`` of the throughput library as users run it: wall time with start-up, and
    the process tree's peak memory."""
    print("CLI ingest of the same library (process tree memory sampled) ...")
    home = work / "homes" / "throughput-cli"
    shutil.rmtree(home, ignore_errors=True)
    cli = timed_cli(
        ["ingest", str(lib_dir), "--home", str(home), "-q"], sample_s=args.sample_s, quiet_s=quiet_s, label="CLI ingest"
    )
    cli["files_per_s"] = round(cli.get("embedded", 0) / cli["wall_s"], 3)
    shutil.rmtree(home, ignore_errors=True)
    print(
        f"  {cli['wall_s']:.1f} s wall ({cli['files_per_s']:.2f} files/s incl. start-up), peak tree RSS "
        f"{cli['memory']['peak_tree_rss_gb']:.2f} GB, max single {cli['memory']['peak_single_rss_gb']:.2f} GB"
    )
    return cli


def system_row(runs: list[dict]) -> dict:
    """One system's row of the throughput table: its best run, medians over the rounds."""
    best = max(runs, key=lambda o: o["files_per_s"])
    cpu = [(o["contention"]["self_cpu_s"] + o["contention"]["children_cpu_s"]) / max(o["files"], 1) for o in runs]
    row = {"files_per_s_best": round(best["files_per_s"], 3)}
    row["files_per_s_median"] = round(statistics.median(o["files_per_s"] for o in runs), 3)
    row |= {"audio_s_per_s_best": round(best["audio_s_per_s"], 2), "wall_s_best": best["wall_s"]}
    row |= {"files": best["files"], "failed": best["failed"], "audio_s": round(best["audio_s"], 1)}
    row |= {"profile_best": best["profile"], "cpu_s_per_file_median": round(statistics.median(cpu), 4)}
    row["undisturbed_runs"] = sum(o["contention"]["other_load_pct"] <= DISTURBED_PCT for o in runs)
    return row | {"runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in o.items()} for o in runs]}


def parse_config(text: str) -> dict:
    """'default' -> {}; 'workers=1+batch=1' -> {"workers": 1, "batch_size": 1}."""
    keys = {"workers": "workers", "batch": "batch_size", "batch_size": "batch_size"}
    out = {}
    for part in text.strip().split("+"):
        if part in ("default", ""):
            continue
        key, _, value = part.partition("=")
        if key not in keys or not value.isdigit():
            raise SystemExit(f"--ingest-configs: cannot read {part!r} (use default, workers=N, batch=N, joined by +)")
        out[keys[key]] = int(value)
    return out


def _ingest_name(config: dict) -> str:
    if not config:
        return "ingest (defaults)"
    return "ingest " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.items())


# ----------------------------------------------------------------------------- rerun
def rerun_part(args, work: Path, quiet_s: float) -> dict:
    """A small-file library ingested once by the CLI, then re-run unchanged, after touching files
    (new mtime, same bytes: the content hash confirms them), once more, and after rewriting others."""
    lib = work / "rerun-library"
    home = work / "homes" / "rerun"
    print(f"rerun library: {args.rerun_files} small WAV files ...")
    gen_s = make_small_library(lib, args.rerun_files, args.seed + 7)
    print(f"  written in {gen_s:.1f} s; first ingest (CLI, memory sampled) ...")
    shutil.rmtree(home, ignore_errors=True)
    base = ["ingest", str(lib), "--home", str(home), "-q"]
    first = timed_cli(base, sample_s=args.sample_s, quiet_s=quiet_s, label="first ingest")
    print(
        f"  first ingest {first['wall_s']:.1f} s ({first.get('embedded')} embedded, "
        f"{first.get('embedded', 0) / first['wall_s']:.1f} files/s), peak tree RSS "
        f"{first['memory']['peak_tree_rss_gb']:.2f} GB"
    )

    startup, _ = timed_block(lambda: run_cli(["ingest", "--help"], sample_s=None), quiet_s=0, retries=0, label="help")

    def timed_rerun(label: str, retries: int = args.retries) -> dict:
        # a run after touching/modifying files changes the store: never re-run those blocks
        row = timed_cli(base, sample_s=None, quiet_s=quiet_s, label=label, retries=retries)
        print(
            f"  {label:30s} {row['wall_s']:6.2f} s  (embedded {row.get('embedded')}, unchanged "
            f"{row.get('unchanged')}, others {row['contention']['other_load_pct']:.0f}% of CPUs)"
        )
        return row

    no_change = [timed_rerun(f"no-change re-run {i + 1}") for i in range(args.rerun_repeats)]
    files = sorted(str(p) for p in lib.rglob("*.wav"))
    rng = np.random.default_rng(args.seed + 11)
    picks = rng.choice(len(files), size=min(2 * args.touch, len(files)), replace=False)
    touched, modified = [files[i] for i in picks[: args.touch]], [files[i] for i in picks[args.touch :]]
    for path in touched:
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after_touch = timed_rerun(f"after touching {len(touched)}", retries=0)
    after_touch_again = timed_rerun("no-change re-run after that")
    import soundfile as sf

    for k, path in enumerate(modified):
        data, rate = sf.read(path, dtype="float32")
        sf.write(path, synth(np.random.default_rng(10_000 + k), data.shape[0], rate, 1), rate, subtype="PCM_16")
    after_modify = timed_rerun(f"after modifying {len(modified)}", retries=0)
    walls = [r["wall_s"] for r in no_change]
    result = {"files": args.rerun_files, "generate_s": round(gen_s, 1), "first_ingest": first}
    result |= {"cli_startup_s": startup["wall_s"], "no_change": no_change}
    result |= {"no_change_median_s": round(statistics.median(walls), 3), "no_change_max_s": round(max(walls), 3)}
    result |= {"after_touch": {**after_touch, "touched": len(touched)}, "after_touch_again": after_touch_again}
    return result | {"after_modify": {**after_modify, "modified": len(modified)}}


# ----------------------------------------------------------------------------- long file
def long_part(args, work: Path, quiet_s: float) -> dict:
    folder = work / "cache" / f"long-{args.long_minutes:g}min-s{args.seed}"
    print(f"long-file library: one {args.long_minutes:g} min 48 kHz stereo FLAC ...")
    lib = make_long_library(folder, args.long_minutes, args.seed)
    made = f", written in {lib['generate_s']:.0f} s" if lib["generated_now"] else " (cached)"
    print(f"  {lib['long_bytes'] / 1e6:.0f} MB{made}; CLI ingest --segments ...")
    home = work / "homes" / "long"
    shutil.rmtree(home, ignore_errors=True)
    args_ = ["ingest", str(folder), "--home", str(home), "-q", "--segments"]
    row = timed_cli(args_, sample_s=args.sample_s, quiet_s=quiet_s, label="long ingest")
    shutil.rmtree(home, ignore_errors=True)
    print(
        f"  {row['wall_s']:.1f} s, {row.get('embedded')} files, segments index "
        f"{row['index'].get('segments', {}).get('vectors')} vectors; {memory_line(row['memory'])}"
    )
    library = {k: v for k, v in lib.items() if k != "stamp"}
    return {"library": library, "ingest": row, "segments": "10 s windows, 5 s hop"}


# ----------------------------------------------------------------------------- report
def memory_line(mem: dict) -> str:
    return (
        f"peak tree RSS {mem['peak_tree_rss_gb']:.2f} GB, max single {mem['peak_single_rss_gb']:.2f} GB, "
        f"tree PSS {mem['peak_tree_pss_gb']:.2f} GB"
    )


def evaluate(results: dict) -> list[dict]:
    checks = []
    tp, rr, lf = results.get("throughput"), results.get("rerun"), results.get("long_file")
    if tp:
        most = TARGETS["overhead"]
        goal = f"pipeline overhead < {100 * most:.0f} % (ingest >= {1 - most:.2f}x pure decode+embed)"
        got = f"ratio {tp['ratio_ingest_vs_peer']:.3f} ({tp['default_system']}), overhead {100 * tp['overhead']:.1f} %"
        checks.append(target(goal, got, tp["overhead"] < most))
    if rr:
        goal = f"no-change re-run of {rr['files']} files < {TARGETS['rerun_s']:.0f} s (CLI, start-up included)"
        got = f"median {rr['no_change_median_s']:.2f} s, max {rr['no_change_max_s']:.2f} s"
        checks.append(target(goal, got, rr["no_change_max_s"] < TARGETS["rerun_s"]))
    peaks = [("throughput library", tp["cli_ingest"]["memory"])] if tp else []
    peaks += [(f"{rr['files']}-file first ingest", rr["first_ingest"]["memory"])] if rr else []
    peaks += [("long file --segments", lf["ingest"]["memory"])] if lf else []
    if peaks:
        goal = f"peak RSS of the ingest process tree < {TARGETS['peak_rss_gb']:.0f} GB"
        got = "; ".join(f"{n}: {m['peak_tree_rss_gb']:.2f} GB" for n, m in peaks)
        checks.append(target(goal, got, max(m["peak_tree_rss_gb"] for _, m in peaks) < TARGETS["peak_rss_gb"]))
    return checks


def print_report(results: dict) -> None:
    m = results["machine"]
    print(
        f"\nmachine: {m['cpu']}, {m['logical_cpus']} logical CPUs; load avg before/after "
        f"{results['load_before']} / {results['load_after']}"
    )
    if tp := results.get("throughput"):
        print_throughput(tp)
    if rr := results.get("rerun"):
        print(
            f"\nrerun: {rr['files']} files; first ingest {rr['first_ingest']['wall_s']:.1f} s; CLI start-up "
            f"(ingest --help) {rr['cli_startup_s']:.2f} s"
        )
        print("  no-change: " + ", ".join(f"{r['wall_s']:.2f}" for r in rr["no_change"]) + " s")
        for key, label in (
            ("after_touch", "after touch"),
            ("after_touch_again", "again"),
            ("after_modify", "after modify"),
        ):
            r = rr[key]
            print(f"  {label:13s} {r['wall_s']:.2f} s (embedded {r.get('embedded')}, unchanged {r.get('unchanged')})")
    if lf := results.get("long_file"):
        lib, mem = lf["library"], lf["ingest"]["memory"]
        print(
            f"\nlong file: {lib['long_seconds'] / 3600:.2f} h FLAC, --segments: {lf['ingest']['wall_s']:.1f} s, "
            f"peak tree RSS {mem['peak_tree_rss_gb']:.2f} GB (max single {mem['peak_single_rss_gb']:.2f} GB, tree PSS "
            f"{mem['peak_tree_pss_gb']:.2f} GB, {mem['max_processes']} processes)"
        )
    print_targets(results["targets"], results["config"]["quick"])


def print_throughput(tp: dict) -> None:
    lib = tp["library"]
    print(f"\nthroughput: {lib['files']} files, {lib['audio_s'] / 60:.1f} min of audio ({tp['statistic']})")
    print_head(
        f"{'system':28s} {'files/s':>8s} {'median':>8s} {'audio-s/s':>10s} {'wall s':>8s} {'x peer':>7s} "
        f"{'CPU-s/file':>10s} {'quiet runs':>10s}"
    )
    peer = tp["systems"][PEER]["files_per_s_best"]
    for name, row in tp["systems"].items():
        print(
            f"{name:28s} {row['files_per_s_best']:8.2f} {row['files_per_s_median']:8.2f} "
            f"{row['audio_s_per_s_best']:10.1f} {row['wall_s_best']:8.1f} {row['files_per_s_best'] / peer:6.3f}x "
            f"{row['cpu_s_per_file_median']:10.4f} {row['undisturbed_runs']:>5d}/{len(row['runs'])}"
        )
    cli = tp["cli_ingest"]
    print(
        f"{'CLI indexer ingest (1 run)':28s} {cli['files_per_s']:8.2f} {'':8s} {'':10s} {cli['wall_s']:8.1f} "
        f"{cli['files_per_s'] / peer:6.3f}x"
    )
    print(
        f"ratio ingest/peer = {tp['ratio_ingest_vs_peer']:.3f}  overhead = {100 * tp['overhead']:.1f} %  "
        f"(per round {tp['ratio_per_round']}, undisturbed rounds {tp['ratio_per_undisturbed_round']}, ratio of "
        f"medians {tp['ratio_of_medians']:.3f}); CPU-s per file peer/ingest {tp['cpu_ratio_peer_vs_ingest']:.3f}"
    )
    p, q = tp["systems"][tp["default_system"]]["profile_best"], tp["systems"][PEER]["profile_best"]
    print(
        f"where the time goes (best {tp['default_system']} run): model open {p['model_open_s']:.2f} s, first "
        f"vector at {p['first_vector_s']:.2f} s, ONNX {p['onnx_s']:.1f} s, DB writes {p['db_write_s']:.2f} s, "
        f"publish {p['publish_s']:.2f} s, main loop not embedding {p['main_not_embedding_s']:.1f} s; CPU: main "
        f"{p['main_process_cpu_s']:.1f} s, decode workers {p['decode_workers_cpu_s']:.1f} s"
    )
    print(
        f"peer: model open {q['model_open_s']:.2f} s, first vector at {q['first_vector_s']:.2f} s, ONNX "
        f"{q['onnx_s']:.1f} s, decode (thread wall) {q['decode_thread_wall_s']:.1f} s"
    )


# ----------------------------------------------------------------------------- main
CONFIGS_HELP = "ingest configurations, comma list of 'default' or overrides joined by '+' (workers=N, batch=N: "
CONFIGS_HELP += "the CLI's --workers / --batch-size); the first is the one the ratio uses"
# options whose default depends on --quick: name -> (type, full run, quick run, help)
SIZED = {
    "files": (int, 400, 6, "throughput library size"),
    "rounds": (int, 2, 1, "throughput rounds"),
    "ingest_configs": (str, "default,workers=1", "default", CONFIGS_HELP),
    "rerun_files": (int, 10_000, 30, "re-run library size"),
    "rerun_repeats": (int, 3, 1, "no-change re-runs timed"),
    "touch": (int, 100, 3, "files touched, and files modified"),
    "long_minutes": (float, 120.0, 1.0, "long file length"),
    "wait_quiet": (float, 20.0, 0.0, "wait up to this many s for other processes to idle before each block"),
    "retries": (int, 1, 0, f"re-runs of a timed block that others disturbed (> {DISTURBED_PCT:.0f} %% of the CPUs)"),
}
ZERO_IS_A_VALUE = ("touch", "wait_quiet", "retries")  # the others take their default when given 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: small sizes, one round")
    add("--out", type=Path, default=Path("bench/results_ingest.json"), help="results JSON")
    add(
        "--work",
        type=Path,
        default=Path("/tmp/clap-bench-ingest"),
        help="generated libraries (cached under WORK/cache) and stores",
    )
    add("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    add("--parts", default="throughput,rerun,long", help="comma list of throughput, rerun, long")
    for name, (kind, full, quick, text) in SIZED.items():
        flag = "--" + name.replace("_", "-")
        add(flag, type=kind, default=None, help=f"{text} (default {full}; quick {quick})")
    add("--sample-ms", type=float, default=50.0, help="memory sampling interval")
    add("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    line_buffered_stdout()
    quick = args.quick
    for name, (_, full, small, _) in SIZED.items():
        value = getattr(args, name)
        if value is None or (not value and name not in ZERO_IS_A_VALUE):
            setattr(args, name, small if quick else full)
    args.sample_s = args.sample_ms / 1000.0
    quiet_s = args.wait_quiet
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if unknown := parts - {"throughput", "rerun", "long"}:
        parser.error(f"unknown parts {sorted(unknown)}")
    if 2 * args.touch > args.rerun_files:
        parser.error("--touch must be at most half of --rerun-files")

    from indexer.settings import IndexerSettings

    model_dir = (args.model or IndexerSettings().resolved_model_dir).resolve()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sizes = {name: getattr(args, name) for name in SIZED if name not in ("wait_quiet", "retries")}
    config = {"quick": quick, "parts": sorted(parts), "model": str(model_dir), **sizes, "sample_ms": args.sample_ms}
    config |= {"wait_quiet_s": quiet_s, "retries": args.retries, "seed": args.seed, "work": str(work)}
    config["default_workers"] = os.cpu_count()
    results: dict = {
        "command": command_line(argv, "ingest.py"),
        "machine": machine_info(),
        "git": git_state(),
        "load_before": loadavg_figures(),
        "config": config,
    }
    print(f"model {model_dir.name}; work dir {work}")
    with CpuMonitor(children=True, exclude_waits=False) as total:
        if "throughput" in parts:
            results["throughput"] = throughput_part(args, model_dir, work, quick, quiet_s)
        if "rerun" in parts:
            results["rerun"] = rerun_part(args, work, quiet_s)
        if "long" in parts:
            results["long_file"] = long_part(args, work, quiet_s)
    results["contention"] = contention(total)
    results["load_after"] = loadavg_figures()
    results["targets"] = evaluate(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(work / "homes", ignore_errors=True)

    print_report(results)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
