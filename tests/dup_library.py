"""A small library of real recordings and variants of two of them (re-encodes, gain, a trim,
a mono mix-down, a resample), for the near-duplicate tests of the core, the CLI and the API.

Distinct recordings are clips of ``deploy/demo-library`` (different sounds: their vectors are far
apart); the variants are what users keep beside the original. ``GROUPS`` is the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

DEMO = Path(__file__).resolve().parents[1] / "deploy" / "demo-library"
MODEL = Path(__file__).resolve().parents[1] / "models" / "clapsearch-sfx-v1"
DISTINCT = ["campfire_small", "cat_meow", "chain_rattle", "car_horn"]
GROUPS = {
    "applause": ["applause.wav", "applause_quiet.flac", "applause_trim.mp3", "applause_mono.ogg"],
}
# ingested later, to check that the cache is updated (the file joins the applause group)
LATE_VARIANT = "applause_22k.wav"


def _read(name: str) -> tuple[np.ndarray, int]:
    x, sr = sf.read(DEMO / f"{name}.ogg", always_2d=True, dtype="float32")
    return x, sr


def write_library(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in DISTINCT:
        x, sr = _read(name)
        sf.write(root / f"{name}.wav", x, sr)
    x, sr = _read("applause")
    sf.write(root / "applause.wav", x, sr)
    sf.write(root / "applause_quiet.flac", x * 0.5, sr)  # -6 dB
    sf.write(root / "applause_trim.mp3", x[int(0.3 * sr) :], sr)  # 0.3 s trimmed off the start
    sf.write(root / "applause_mono.ogg", x.mean(axis=1), sr)
    return root


def write_late_variant(root: Path) -> Path:
    from scipy.signal import resample_poly

    x, sr = _read("applause")
    path = root / "late" / LATE_VARIANT
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, resample_poly(x, 22_050, sr, axis=0).astype(np.float32), 22_050)
    return path


def ingest(home: Path, paths: list[Path], collection: str = "default"):
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store

    store = Store.open(IndexerSettings(home=home, model=MODEL, index_dir=None))
    try:
        return run_ingest(store, IngestOptions(paths=[str(p) for p in paths], workers=1, collection=collection)).stats
    finally:
        store.close()


def ingested_library(tmp_path_factory) -> tuple[Path, Path]:
    """(library root, home) with the whole library written and ingested, every file embedded."""
    root = write_library(tmp_path_factory.mktemp("duplib"))
    home = tmp_path_factory.mktemp("duphome")
    stats = ingest(home, [root])
    assert stats.embedded == len(DISTINCT) + sum(len(v) for v in GROUPS.values()) and stats.failed == 0
    return root, home


def open_store(home: Path):
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store

    return Store.open(IndexerSettings(home=home, model=MODEL, index_dir=None), create=False)
