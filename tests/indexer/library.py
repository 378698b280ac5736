"""Generated audio libraries for the store and ingest tests: every format soundfile writes,
and the bad files users have (garbage, truncated, empty, wrong extension)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.helpers import tone

# extension -> (soundfile format, subtype)
FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", "PCM_24"),
    "au": ("AU", "PCM_16"),
    "caf": ("CAF", "PCM_16"),
    "w64": ("W64", "FLOAT"),
    "rf64": ("RF64", "PCM_16"),
}


def write(
    path: Path,
    seconds: float = 2.0,
    *,
    sr: int = 48_000,
    ext: str | None = None,
    freq: float = 440.0,
    channels: int = 1,
    seed: int = 0,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = FORMATS[ext or path.suffix[1:]]
    if fmt == "OGG" and subtype == "OPUS":
        sr = 48_000
    sf.write(path, tone(seconds, sr, freq=freq, channels=channels, seed=seed), sr, format=fmt, subtype=subtype)
    return path


def good_library(root: Path, *, n_extra: int = 0) -> list[Path]:
    """One file per format (mixed rates and channel counts) plus ``n_extra`` short wavs."""
    files = []
    for i, ext in enumerate(FORMATS):
        files.append(
            write(
                root / ("nested" if i % 2 else "") / f"{ext}_file.{ext}",
                1.0 + 0.5 * i,
                sr=(16_000, 44_100, 48_000)[i % 3],
                freq=200.0 + 150 * i,
                channels=1 + i % 2,
                seed=i,
            )
        )
    for i in range(n_extra):
        files.append(write(root / "extra" / f"clip{i:03d}.wav", 1.0, sr=16_000, freq=300.0 + 37 * i, seed=100 + i))
    return files


def bad_files(root: Path) -> dict[str, Path]:
    """name -> path of files that must fail with a recorded reason, never stop the run."""
    root.mkdir(parents=True, exist_ok=True)
    garbage = root / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    truncated = root / "truncated.flac"
    write(root / "whole.flac", 3.0)
    data = (root / "whole.flac").read_bytes()
    (root / "whole.flac").unlink()
    truncated.write_bytes(data[:200])
    empty = root / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16_000)
    text = root / "notes.mp3"
    text.write_text("this is not audio at all\n" * 20)
    return {"garbage": garbage, "truncated": truncated, "empty": empty, "text": text}
