"""Patch models (``long_policy: patch_mean``, YAMNet-style): a file as ALL of its patches.

The tower sees short patches of log-mel frames (YAMNet: 96 frames = 0.96 s, every 48 frames =
0.48 s); a file's vector is the mean of the tower's per-patch outputs over every patch of the
file, whatever its length: no crop, no 10 s limit. This module owns the geometry and streams the
patches in bounded memory, so a one-hour file never holds more than one chunk of patches.

Padding rule (YAMNet's own, and the documented rule for short clips): the waveform is zero-filled
at the end to the smallest length that is one whole patch (``win_length + (patch_frames - 1) *
hop_length`` samples, 0.975 s) plus a whole number of patch hops, so every sample is seen by at
least one patch and a clip shorter than one patch becomes exactly one patch (its sound followed by
silence). Silence in, silence out: an all-zero file is a valid patch of ``log(amin)``.

Determinism: a patch's frames are computed from the same samples whatever chunk it falls in, and
numpy's FFT and the per-filter mel sums work row by row, so a patch is bit-identical in any chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from indexer.audio.frontend import SampleReader, log_mel_frames
from indexer.audio.spec import AudioFrontend

# Patches per chunk when streaming: 256 x 96 x 64 float32 = 6.3 MB of features at a time.
PATCH_CHUNK = 256
# STFT frames computed at once for a view (~41 s at a 10 ms hop; ~10 MB of frames and spectra).
FRAME_CHUNK = 4096


def _geometry(spec: AudioFrontend) -> tuple[int, int]:
    if spec.long_policy != "patch_mean" or spec.patch_frames is None or spec.patch_hop_frames is None:
        raise ValueError("not a patch_mean front end")
    return spec.patch_frames, spec.patch_hop_frames


def patch_samples(spec: AudioFrontend) -> int:
    """Samples one patch spans (YAMNet: 15 600 = 0.975 s at 16 kHz)."""
    frames, _ = _geometry(spec)
    return spec.win_length + (frames - 1) * spec.hop_length


def padded_length(num_samples: int, spec: AudioFrontend) -> int:
    """Length after the end zero-fill: one patch plus whole patch hops, covering every sample."""
    _, hop = _geometry(spec)
    first, step = patch_samples(spec), hop * spec.hop_length
    extra = max(0, num_samples - first)
    return first + -(-extra // step) * step


def patch_count(num_samples: int, spec: AudioFrontend) -> int:
    """Number of patches of a waveform of ``num_samples`` (at least 1, also for an empty read)."""
    _, hop = _geometry(spec)
    return 1 + (padded_length(num_samples, spec) - patch_samples(spec)) // (hop * spec.hop_length)


def total_frames(num_samples: int, spec: AudioFrontend) -> int:
    """STFT frames of the padded waveform: exactly the frames the patches cover."""
    frames, hop = _geometry(spec)
    return frames + (patch_count(num_samples, spec) - 1) * hop


def zero_filled(read: SampleReader, num_samples: int) -> SampleReader:
    """``read`` extended with zeros past ``num_samples``."""

    def padded(start: int, stop: int) -> np.ndarray:
        body = read(min(start, num_samples), min(stop, num_samples)) if start < num_samples else np.zeros(0, np.float32)
        missing = (stop - start) - body.shape[0]
        return np.concatenate([body, np.zeros(missing, np.float32)]) if missing > 0 else body

    return padded


def frames_to_patches(frames: np.ndarray, spec: AudioFrontend) -> np.ndarray:
    """(T, n_mels) frames -> (P, patch_frames, n_mels) patches (a strided view, no copy).

    T must be ``patch_frames + k * patch_hop_frames``; trailing frames that do not fill a patch
    are ignored (the padding rule never produces them).
    """
    size, hop = _geometry(spec)
    if frames.shape[0] < size:
        raise ValueError(f"{frames.shape[0]} frames cannot hold one {size}-frame patch")
    view = np.lib.stride_tricks.sliding_window_view(frames, size, axis=0)[::hop]  # (P, n_mels, size)
    return view.transpose(0, 2, 1)


def iter_patch_chunks(
    read: SampleReader, num_samples: int, spec: AudioFrontend, chunk: int = PATCH_CHUNK
) -> Iterator[np.ndarray]:
    """All patches of a waveform in order, as contiguous float32 chunks of at most ``chunk``."""
    size, hop = _geometry(spec)
    padded = zero_filled(read, num_samples)
    length = padded_length(num_samples, spec)
    count = patch_count(num_samples, spec)
    for first in range(0, count, chunk):
        last = min(first + chunk, count)  # patches [first, last)
        frame_ids = np.arange(first * hop, (last - 1) * hop + size)
        frames = log_mel_frames(padded, length, frame_ids, spec)
        yield np.ascontiguousarray(frames_to_patches(frames, spec))


def clip_frames(read: SampleReader, num_samples: int, spec: AudioFrontend) -> np.ndarray:
    """(T, n_mels) log-mel frames of a whole padded waveform: what a patch tower's view carries."""
    length, total = padded_length(num_samples, spec), total_frames(num_samples, spec)
    padded = zero_filled(read, num_samples)
    out = np.empty((total, spec.n_mels), np.float32)
    # In runs of FRAME_CHUNK frames: the STFT of a whole hour at once would hold ~1.5 GB of frames
    # and spectra; a frame's value does not depend on the run it is computed in (row-wise FFT).
    for first in range(0, total, FRAME_CHUNK):
        last = min(first + FRAME_CHUNK, total)
        out[first:last] = log_mel_frames(padded, length, np.arange(first, last), spec)
    return out
