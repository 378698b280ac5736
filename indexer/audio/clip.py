"""The 10 s rule: turn a waveform of any length into the fixed-size views a CLAP tower takes.

Short clips (<= ``clip_samples``) are repeat-padded: tiled ``int(clip/len)`` times, then zero-padded.

Long clips, non-fusion models (``center_crop``): the centre ``clip_samples`` of the file.
laion_clap picks a random crop; a centre crop is the deterministic choice that keeps the most
representative part of a typical file and matches the golden fixtures.

Long clips, fusion models (``fusion``): four views, ``[global, front, middle, back]``.
The global view is the whole file's log-mel resized to ``chunk_frames`` rows (bilinear,
align_corners=False, no antialias, as in training). The local views are ``chunk_frames``-row
crops, one from each third of the valid start positions, at the FIXED middle of that third
(laion picks at random). A file only a few samples longer than a clip (same frame count) is
treated as not longer, exactly like laion_clap.

Patch models (``patch_mean``): one view of ALL the file's log-mel frames, ``(1, T, n_mels)``,
zero-filled at the end as ``indexer.audio.patches`` defines; the encoder cuts it into patches and
averages the tower's outputs over all of them. ``crop_start`` (training only) takes
``clip_samples`` from a long file instead.

Everything here is per clip: a clip's views never depend on what else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.audio.frontend import SampleReader, log_mel, log_mel_frames, num_frames
from indexer.audio.spec import AudioFrontend


@dataclass(frozen=True)
class ClipViews:
    features: np.ndarray  # (C, chunk_frames, n_mels) float32; C = 4 (fusion) or 1
    is_longer: bool  # fusion models: True when the local views carry information
    fusion_starts: tuple[int, int, int] | None = None  # frame index of each local view
    crop_start: int | None = None  # sample index of a centre crop


def repeat_pad(waveform: np.ndarray, clip_samples: int) -> np.ndarray:
    n = waveform.shape[0]
    tiled = np.tile(waveform, clip_samples // n)
    return np.pad(tiled, (0, clip_samples - tiled.shape[0]))


def peak_normalized(clip: np.ndarray) -> np.ndarray:
    """``clip / max|clip|`` (silence stays silence)."""
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    return clip / np.float32(peak) if peak > 0 else clip


def fusion_chunk_starts(total_frames: int, chunk_frames: int) -> tuple[int, int, int]:
    """Middle element of each third of the candidate start frames (empty thirds -> 0)."""
    ranges = np.array_split(np.arange(0, total_frames - chunk_frames + 1), 3)
    starts = [int(r[len(r) // 2]) if len(r) else 0 for r in ranges]
    return starts[0], starts[1], starts[2]


def _bilinear_rows(total: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows and weights of a 1-D linear resize, align_corners=False.

    Arithmetic in float32 on purpose: PyTorch's CPU kernel (what laion_clap trained with on a
    float32 mel) computes the scale, source index and weights in float32, and on a 6000-frame file
    float64 weights differ from those by up to 0.01 dB.
    """
    scale = np.float32(total) / np.float32(out)
    src = scale * (np.arange(out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, total - 1)
    w1 = src - i0.astype(np.float32)
    return i0, i1, w1


def clip_views(
    read: SampleReader,
    num_samples: int,
    spec: AudioFrontend,
    *,
    fusion_views: bool | None = None,
    crop_start: int | None = None,
    fusion_starts: tuple[int, int, int] | None = None,
) -> ClipViews:
    """Model input for one waveform given as a sample reader (in memory or streamed from disk).

    ``crop_start`` (sample index) and ``fusion_starts`` (frame indices) replace the deterministic
    choices for long clips; training passes random ones (laion_clap's random crop and random
    fusion chunks), serving never does. Out-of-range values raise ValueError.
    """
    if spec.long_policy == "patch_mean":
        return _patch_views(read, num_samples, spec, crop_start)
    fused = spec.long_policy == "fusion" if fusion_views is None else fusion_views
    channels = 4 if fused else 1
    clip = spec.clip_samples
    chunk = spec.chunk_frames

    if spec.peak_normalize:  # per clip, so only the samples the clip uses (centre crop or the whole)
        if fused:
            raise ValueError("peak_normalize is per clip and cannot be combined with fusion views")
        raw = read
        read = lambda a, b: peak_normalized(raw(a, b))  # noqa: E731  one read per clip below

    if num_samples <= clip:
        mel = log_mel(repeat_pad(read(0, num_samples), clip), spec)
        return ClipViews(np.repeat(mel[None], channels, axis=0), is_longer=False)

    if not fused:
        start = (num_samples - clip) // 2 if crop_start is None else int(crop_start)
        if not 0 <= start <= num_samples - clip:
            raise ValueError(f"crop_start {start} outside [0, {num_samples - clip}]")
        mel = log_mel(read(start, start + clip), spec)
        return ClipViews(mel[None], is_longer=False, crop_start=start)

    total = num_frames(num_samples, spec)
    if total == chunk:
        mel = log_mel_frames(read, num_samples, np.arange(total), spec)
        return ClipViews(np.repeat(mel[None], 4, axis=0), is_longer=False)

    starts = fusion_chunk_starts(total, chunk) if fusion_starts is None else tuple(int(s) for s in fusion_starts)
    if len(starts) != 3 or not all(0 <= s <= total - chunk for s in starts):
        raise ValueError(f"fusion_starts {starts} need 3 frame indices in [0, {total - chunk}]")
    i0, i1, w1 = _bilinear_rows(total, chunk)
    local = [np.arange(s, s + chunk) for s in starts]
    needed = np.unique(np.concatenate([i0, i1, *local]))
    mel = log_mel_frames(read, num_samples, needed, spec)
    take = lambda frames: mel[np.searchsorted(needed, frames)]  # noqa: E731  rows of ``mel``
    w = w1[:, None]
    global_view = take(i0) * (np.float32(1.0) - w) + take(i1) * w
    views = np.stack([global_view, *(take(frames) for frames in local)]).astype(np.float32)
    return ClipViews(views, is_longer=True, fusion_starts=starts)


def _patch_views(read: SampleReader, num_samples: int, spec: AudioFrontend, crop_start: int | None) -> ClipViews:
    from indexer.audio.patches import clip_frames

    if crop_start is None:
        return ClipViews(clip_frames(read, num_samples, spec)[None], is_longer=False)
    start, clip = int(crop_start), spec.clip_samples
    if not 0 <= start <= max(0, num_samples - clip):
        raise ValueError(f"crop_start {start} outside [0, {max(0, num_samples - clip)}]")
    length = min(clip, num_samples - start)
    frames = clip_frames(lambda a, b: read(start + a, start + min(b, length)), length, spec)
    return ClipViews(frames[None], is_longer=False, crop_start=start)


def waveform_views(waveform: np.ndarray, spec: AudioFrontend) -> ClipViews:
    """:func:`clip_views` for an in-memory float32 mono waveform at ``spec.sample_rate``."""
    waveform = np.asarray(waveform, dtype=np.float32)
    return clip_views(lambda a, b: waveform[a:b], waveform.shape[0], spec)
