"""Decode-check, fingerprint, de-duplicate, window and write corpus clips.

Why these steps: game packages reuse the same recording under several names (and across games),
ship silent placeholders and clicks of a few milliseconds, and store minute-long ambiences that
would dominate a batch. So every clip is decoded once (:func:`analyse`), clips that are broken,
silent or shorter than ``min_s`` are dropped, duplicates are found by exact content hash and then by
a compact spectral fingerprint (16 kHz mono, 32-band log-mel averaged over 8 time segments,
mean-removed; cosine > 0.995 with durations within 10 % counts as a duplicate), and long files are
cut into windows (:func:`windows`). Output is mono FLAC at the original sample rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

FP_RATE = 16000
FP_BANDS = 32
FP_SEGMENTS = 8
SILENCE_PEAK = 1e-3  # peak below this (-60 dBFS) is silence
MAX_DECODE_S = 20 * 60  # longer files are not sound effects; skip instead of filling RAM


@dataclass
class Analysis:
    """What one decode of a file tells us. ``status`` is "ok" or the reason it was dropped."""

    status: str
    duration_s: float = 0.0
    sample_rate: int = 0
    sha1: str = ""
    fingerprint: list[float] = field(default_factory=list)


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """The file as float32 mono (channel mean) and its sample rate; raises on decode errors."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(sr)


def _mel_filters(n_fft: int, sr: int, bands: int) -> np.ndarray:
    """Triangular HTK-mel filters, ``(bands, n_fft // 2 + 1)``."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(20.0), mel(sr / 2), bands + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((bands, freqs.size), dtype=np.float32)
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[b] = np.clip(np.minimum(up, down), 0, None)
    return fb


_FB = None


def fingerprint(x: np.ndarray, sr: int) -> np.ndarray:
    """Unit-norm, mean-removed ``FP_BANDS * FP_SEGMENTS`` vector describing the clip's spectrum."""
    global _FB
    if _FB is None:
        _FB = _mel_filters(512, FP_RATE, FP_BANDS)
    y = soxr.resample(x, sr, FP_RATE) if sr != FP_RATE else x
    if y.size < 512:
        y = np.pad(y, (0, 512 - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, 512)[::256]
    spec = np.abs(np.fft.rfft(frames * np.hanning(512).astype(np.float32), axis=1)) ** 2
    logmel = np.log10(1e-8 + spec @ _FB.T)  # (frames, bands)
    segs = np.array_split(logmel, FP_SEGMENTS, axis=0)
    vec = np.concatenate([s.mean(axis=0) if len(s) else logmel.mean(axis=0) for s in segs])
    vec = vec - vec.mean()
    norm = np.linalg.norm(vec)
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def analyse(path: str | Path, min_s: float = 0.3) -> Analysis:
    """Decode ``path`` once; report why it is unusable, or its duration, hash and fingerprint."""
    path = Path(path)
    try:
        info = sf.info(str(path))
        if info.frames / max(info.samplerate, 1) > MAX_DECODE_S:
            return Analysis("too long to be a sound effect")
        x, sr = read_mono(path)
    except Exception as exc:  # libsndfile raises several types; all mean "cannot use"
        return Analysis(f"undecodable ({type(exc).__name__})")
    if x.size == 0 or not np.all(np.isfinite(x)):
        return Analysis("undecodable (empty or non-finite)")
    dur = x.size / sr
    if dur < min_s:
        return Analysis(f"shorter than {min_s:g} s", dur, sr)
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        return Analysis("silent", dur, sr)
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    return Analysis("ok", dur, sr, sha1, fingerprint(x, sr).round(5).tolist())


def find_duplicates(
    items: list[tuple[str, Analysis]], threshold: float = 0.995, duration_tol: float = 0.10
) -> dict[str, tuple[str, str]]:
    """``{key: (kept_key, how)}`` for every duplicate; the first of each group (in ``items``
    order, so callers put train sources first) is kept. ``how`` is "exact" or "near"."""
    dups: dict[str, tuple[str, str]] = {}
    by_hash: dict[str, str] = {}
    kept: list[tuple[str, Analysis]] = []
    for key, a in items:
        if a.sha1 in by_hash:
            dups[key] = (by_hash[a.sha1], "exact")
            continue
        by_hash[a.sha1] = key
        kept.append((key, a))
    if len(kept) < 2:
        return dups
    fps = np.asarray([a.fingerprint for _, a in kept], dtype=np.float32)
    durs = np.asarray([a.duration_s for _, a in kept])
    alive = np.ones(len(kept), dtype=bool)
    for i in range(len(kept)):
        if not alive[i]:
            continue
        sims = fps[i + 1 :] @ fps[i]
        close = np.abs(durs[i + 1 :] - durs[i]) <= duration_tol * np.maximum(durs[i + 1 :], durs[i])
        for j in np.nonzero((sims > threshold) & close & alive[i + 1 :])[0] + i + 1:
            alive[j] = False
            dups[kept[j][0]] = (kept[i][0], "near")
    return dups


def windows(
    duration_s: float, long_s: float = 12.0, win_s: float = 10.0, hop_s: float = 10.0, max_windows: int = 6
) -> list[tuple[float, float]]:
    """``[(start, end)]`` in seconds: the whole file when it is not longer than ``long_s``, else
    full windows of ``win_s`` every ``hop_s`` (at most ``max_windows``)."""
    if duration_s <= long_s:
        return [(0.0, duration_s)]
    out = []
    start = 0.0
    while start + win_s <= duration_s + 1e-6 and len(out) < max_windows:
        out.append((start, start + win_s))
        start += hop_s
    return out


def write_clips(src: str | Path, targets: list[tuple[Path, float, float]]) -> list[bool]:
    """Write ``(path, start_s, end_s)`` slices of ``src`` as mono FLAC at the original rate.
    Existing targets are kept (idempotent re-runs). Returns, per target, whether it holds sound
    (a silent window is not written and reported False)."""
    if all(t.exists() and t.stat().st_size > 0 for t, _, _ in targets):
        return [True] * len(targets)
    x, sr = read_mono(src)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    gain = 0.98 / peak if peak > 1.0 else 1.0  # float files can exceed full scale
    ok = []
    for path, start, end in targets:
        seg = x[int(round(start * sr)) : int(round(end * sr))] * gain
        if seg.size == 0 or float(np.max(np.abs(seg))) < SILENCE_PEAK:
            ok.append(False)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        sf.write(str(tmp), seg, sr, format="FLAC", subtype="PCM_16")
        tmp.replace(path)
        ok.append(True)
    return ok
