"""Near-duplicate finder (``indexer duplicates``): precision and recall on generated variants, and
its time against a brute-force numpy pass measured in the same run.

    PYTHONPATH=. python bench/duplicates.py [--originals 30] [--distinct 60] [--scale 100000]

The set: ``--originals`` recordings (real clips of deploy/demo-library, and generated tones, noise
bursts and chirps with different envelopes) each with the variants users keep beside them: a
transcode to every format soundfile writes (WAV, FLAC, OGG Vorbis, MP3), gain -6 and +6 dB, a
trim of 0.1-2 s (at most 40 % of a short clip), a resample to 22.05, 44.1 and 48 kHz, and a
mono mix-down (or a stereo up-mix of a mono original); mixed with ``--distinct`` other recordings
that have no variant (more demo clips and generated sounds: the near misses, like two different
cat meows, are there on purpose). Everything is ingested with the shipped default model into a
temporary home, then the finder runs; the truth is which files came from which recording.

Figures: pair precision and recall of the groups at several thresholds (a pair of files is
predicted a duplicate when the finder puts them in one group), recall per variant kind at the
default threshold, the finder's time (full, cached, after an ingest of one file) against numpy's
n x n matrix on the same vectors, and at ``--scale`` vectors (synthetic, with planted
near-duplicates) the inverted-file range search against the exact one (FAISS flat range search,
which is brute force) on a sample of queries. Results: bench/results_duplicates.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import work_folder  # noqa: E402
from bench.machine import loadavg, start_record  # noqa: E402

DEMO = REPO / "deploy" / "demo-library"
THRESHOLDS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
SR = 44_100


def synthetic(kind: str, seed: int) -> tuple[np.ndarray, int]:
    """A generated recording: a tone, a noise burst or a chirp, 2-8 s, with its own envelope."""
    rng = np.random.default_rng(seed)
    seconds = rng.uniform(2.0, 8.0)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        f = rng.uniform(80, 4000)
        x = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2.01 * f * t)
    elif kind == "noise":
        x = rng.standard_normal(t.size)
        k = int(rng.integers(5, 200))
        x = np.convolve(x, np.ones(k) / k, mode="same") * np.sqrt(k)  # coloured
    else:
        f0, f1 = rng.uniform(100, 1000), rng.uniform(1500, 8000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    rate = rng.uniform(0.3, 6.0)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6))
    decay = np.exp(-t * rng.uniform(0, 0.8))
    x = 0.3 * x / (np.abs(x).max() + 1e-9) * envelope * decay
    return x.astype(np.float32)[:, None], SR


def demo(name: str) -> tuple[np.ndarray, int]:
    x, sr = sf.read(DEMO / name, always_2d=True, dtype="float32")
    return x, sr


def variants(x: np.ndarray, sr: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, int, str]]:
    """kind -> (samples, rate, extension)."""
    from scipy.signal import resample_poly

    out = {
        "transcode_wav": (x, sr, "wav"),
        "transcode_flac": (x, sr, "flac"),
        "transcode_ogg": (x, sr, "ogg"),
        "transcode_mp3": (x, sr, "mp3"),
        "gain_-6dB": (x * 0.5, sr, "flac"),
        "gain_+6dB": (np.clip(x * 2.0, -1, 1), sr, "flac"),
    }
    duration = len(x) / sr
    cut = min(rng.uniform(0.1, 2.0), 0.4 * duration)
    head = rng.random() < 0.5
    n = int(cut * sr)
    out["trim"] = (x[n:] if head else x[: len(x) - n], sr, "wav")
    for rate in (22_050, 44_100, 48_000):
        if rate != sr:
            out[f"resample_{rate}"] = (resample_poly(x, rate, sr, axis=0).astype(np.float32), rate, "flac")
    out["channels"] = (x.mean(axis=1, keepdims=True) if x.shape[1] > 1 else np.repeat(x, 2, axis=1), sr, "ogg")
    return out


def write(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix[1:]
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[ext]
    sf.write(path, x, sr, subtype=subtype)


def build_set(root: Path, n_originals: int, n_distinct: int, seed: int = 0) -> dict[str, tuple[str, str]]:
    """Write the library; returns file name -> (recording, kind)."""
    rng = np.random.default_rng(seed)
    clips = sorted(p.name for p in DEMO.glob("*.ogg"))
    rng.shuffle(clips)
    kinds = ("tone", "noise", "chirp")
    n_demo_orig = (n_originals * 2) // 3
    n_demo_distinct = min(len(clips) - n_demo_orig, (n_distinct * 2) // 3)
    sources = [("demo", c) for c in clips[:n_demo_orig]]
    sources += [("synth", f"{kinds[i % 3]}:{i}") for i in range(n_originals - n_demo_orig)]
    distinct = [("demo", c) for c in clips[n_demo_orig : n_demo_orig + n_demo_distinct]]
    distinct += [("synth", f"{kinds[i % 3]}:{1000 + i}") for i in range(n_distinct - n_demo_distinct)]
    truth: dict[str, tuple[str, str]] = {}

    def load(source: tuple[str, str]) -> tuple[np.ndarray, int, str]:
        kind, name = source
        if kind == "demo":
            x, sr = demo(name)
            return x, sr, Path(name).stem
        family, number = name.split(":")
        x, sr = synthetic(family, int(number))
        return x, sr, f"{family}_{number}"

    for source in sources:
        x, sr, stem = load(source)
        write(root / "originals" / f"{stem}.wav", x, sr)
        truth[f"originals/{stem}.wav"] = (stem, "original")
        for kind, (y, rate, ext) in variants(x, sr, rng).items():
            rel = f"variants/{stem}/{kind}.{ext}"
            write(root / rel, y, rate)
            truth[rel] = (stem, kind)
    for source in distinct:
        x, sr, stem = load(source)
        rel = f"distinct/{stem}.wav"
        write(root / rel, x, sr)
        truth[rel] = (stem, "distinct")
    return truth


def pair_scores(groups: list[list[str]], truth: dict[str, tuple[str, str]]) -> tuple[float, float, int, int]:
    true_pairs = {
        frozenset(p)
        for p in combinations(sorted(truth), 2)
        if truth[p[0]][0] == truth[p[1]][0] and truth[p[0]][1] != "distinct"
    }
    predicted = {frozenset(p) for g in groups for p in combinations(sorted(g), 2)}
    hit = len(true_pairs & predicted)
    precision = hit / len(predicted) if predicted else 1.0
    recall = hit / len(true_pairs) if true_pairs else 1.0
    return precision, recall, len(predicted), len(true_pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=int, default=30)
    parser.add_argument("--distinct", type=int, default=60)
    parser.add_argument("--scale", type=int, default=100_000, help="synthetic vectors for the scale run (0: skip)")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped default model")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results_duplicates.json")
    args = parser.parse_args()

    from indexer.duplicates import DEFAULT_THRESHOLD, find_duplicates, range_pairs
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.settings import IndexerSettings
    from indexer.store import catalog, vector_rows
    from indexer.store.store import Store

    results = start_record()
    with work_folder(None, "bench-dups-") as work:
        root, home = work / "library", work / "home"
        truth = build_set(root, args.originals, args.distinct)
        settings = IndexerSettings(home=home, **({"model": args.model} if args.model else {}))
        store = Store.open(settings)
        started = time.perf_counter()
        report = run_ingest(store, IngestOptions(paths=[str(root)]))
        results["ingest_s"] = round(time.perf_counter() - started, 1)
        results["model"] = store.manifest.name
        results["files"] = report.stats.embedded
        results["failed"] = report.stats.failed
        results["variant_files"] = sum(1 for v in truth.values() if v[1] not in ("original", "distinct"))
        print(f"{report.stats.embedded} files ingested ({report.stats.failed} failed) in {results['ingest_s']} s")

        target = store.collection("default")
        names = {i: str(Path(p).relative_to(root)) for i, p in catalog.iter_file_paths(store.db, target.id)}
        pages = list(vector_rows.iter_vectors(store.db, target.id, "files"))
        ids = np.concatenate([p[0] for p in pages])
        vectors = np.concatenate([p[1] for p in pages])

        results["thresholds"] = threshold_sweep(store, names, truth)

        # recall per variant kind at the default threshold: is the variant in its original's group?
        found = find_duplicates(store, threshold=DEFAULT_THRESHOLD, use_cache=False)
        group_of = {names[m.id]: n for n, g in enumerate(found.groups) for m in g.members}
        per_kind: dict[str, list[int]] = {}
        for rel, (stem, kind) in truth.items():
            if kind in ("original", "distinct"):
                continue
            original = f"originals/{stem}.wav"
            together = rel in group_of and group_of.get(original) == group_of[rel]
            per_kind.setdefault(kind.split("_")[0] if kind.startswith("resample") else kind, []).append(int(together))
        mixed = []
        for g in found.groups:
            stems = sorted({truth[names[m.id]][0] for m in g.members})
            if len(stems) > 1:
                mixed.append(stems)
        results["mixed_groups_at_default"] = mixed
        print("groups that join different recordings at", DEFAULT_THRESHOLD, mixed)
        results["recall_by_kind_at_default"] = {k: round(float(np.mean(v)), 3) for k, v in sorted(per_kind.items())}
        print("recall by kind at", DEFAULT_THRESHOLD, results["recall_by_kind_at_default"])

        results["timing"] = time_finder(store, ids, vectors, root, truth)
        print("timing (best of 3):", results["timing"])
        store.close()

        if args.scale:
            results["scale"] = scale_run(args.scale, range_pairs)
            print("scale:", results["scale"])
    results["loadavg_end"] = loadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def threshold_sweep(store, names: dict[int, str], truth: dict[str, tuple[str, str]]) -> list[dict]:
    """Pair precision and recall of the finder's groups at each of THRESHOLDS."""
    from indexer.duplicates import find_duplicates

    real_stems = {Path(c).stem for c in DEMO.glob("*.ogg")}
    rows = []
    for threshold in THRESHOLDS:
        found = find_duplicates(store, threshold=threshold, use_cache=False)
        groups = [[names[m.id] for m in g.members] for g in found.groups]
        precision, recall, n_pred, n_true = pair_scores(groups, truth)
        # the real clips alone: generated chirps are alike to the model (different chirps join)
        real_truth = {r: v for r, v in truth.items() if v[0] in real_stems}
        real_p, real_r, _, _ = pair_scores([[f for f in g if f in real_truth] for g in groups], real_truth)
        rows.append(
            {
                "threshold": threshold,
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "groups": len(groups),
                "predicted_pairs": n_pred,
                "true_pairs": n_true,
                "real_clips_precision": round(real_p, 4),
                "real_clips_recall": round(real_r, 4),
            }
        )
        print(
            f"threshold {threshold:.2f}: precision {precision:.3f} recall {recall:.3f} ({len(groups)} groups); "
            f"real clips only: precision {real_p:.3f} recall {real_r:.3f}"
        )
    return rows


def time_finder(store, ids: np.ndarray, vectors: np.ndarray, root: Path, truth: dict[str, tuple[str, str]]) -> dict:
    """The finder (full, cached, then incremental after one late copy) against numpy's n x n
    matrix on the same vectors; best of 3 each."""
    from indexer.duplicates import DEFAULT_THRESHOLD, brute_force_pairs, find_duplicates, group_pairs
    from indexer.ingest.pipeline import IngestOptions, run_ingest

    timings = {}
    for _ in range(3):
        t = time.perf_counter()
        full = find_duplicates(store, threshold=DEFAULT_THRESHOLD, use_cache=False)
        timings.setdefault("finder_full_s", []).append(time.perf_counter() - t)
        t = time.perf_counter()
        again = find_duplicates(store, threshold=DEFAULT_THRESHOLD)
        timings.setdefault("finder_cached_s", []).append(time.perf_counter() - t)
        t = time.perf_counter()
        brute = brute_force_pairs(ids, vectors, DEFAULT_THRESHOLD)
        groups_brute = group_pairs(brute)
        timings.setdefault("numpy_brute_force_s", []).append(time.perf_counter() - t)
    assert again.mode == "cached"
    assert sorted(sorted(m.id for m in g.members) for g in full.groups) == sorted(
        g for g in groups_brute if len(g) >= 2
    )
    extra = root / "late" / "late_copy.flac"
    x, sr = sf.read(root / sorted(r for r in truth if r.startswith("originals/"))[0], always_2d=True)
    write(extra, x * 0.7, sr)
    run_ingest(store, IngestOptions(paths=[str(extra)]))
    t = time.perf_counter()
    after = find_duplicates(store, threshold=DEFAULT_THRESHOLD)
    timings["finder_incremental_s"] = [time.perf_counter() - t]
    assert after.mode == "incremental", after.mode
    timing = {k: round(min(v), 4) for k, v in timings.items()}
    timing["n_vectors"] = int(len(ids))
    timing["full_vs_numpy_ratio"] = round(timing["finder_full_s"] / timing["numpy_brute_force_s"], 2)
    return timing


def scale_run(n: int, range_pairs) -> dict:
    """``n`` clustered synthetic vectors (512-d) of which 2 % are planted near-duplicates: the
    inverted-file range search (what the finder uses from 50 000 vectors) over all of them, against
    the exact range search (brute force) timed on 2 000 queries and scaled to n."""
    rng = np.random.default_rng(0)
    d, planted = 512, n // 50
    centres = rng.standard_normal((max(1, n // 50), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    x[n - planted :] = x[:planted] + 0.08 * rng.standard_normal((planted, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    approx = range_pairs(ids, x, ids, x, 0.97, exact=False)
    ivf_s = time.perf_counter() - t
    sample = np.arange(0, n, max(1, n // 2000))[:2000]
    t = time.perf_counter()
    exact_sample = range_pairs(ids, x, ids[sample], x[sample], 0.97, exact=True)
    exact_sample_s = time.perf_counter() - t
    in_sample = set(ids[sample].tolist())
    approx_sample = {k for k in approx if k[0] in in_sample or k[1] in in_sample}
    recall = len(approx_sample & exact_sample.keys()) / max(1, len(exact_sample))
    planted_found = sum((i, n - planted + i) in approx for i in range(planted)) / planted
    return {
        "n_vectors": n,
        "ivf_range_search_s": round(ivf_s, 1),
        "exact_range_search_s_extrapolated": round(exact_sample_s * n / len(sample), 1),
        "exact_sample_queries": int(len(sample)),
        "pair_recall_vs_exact_on_sample": round(recall, 4),
        "planted_pairs_found": round(planted_found, 4),
        "pairs": len(approx),
    }


if __name__ == "__main__":
    raise SystemExit(main())
