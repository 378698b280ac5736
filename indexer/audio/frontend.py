"""Log-mel front end: the ONE definition of waveform -> features, in vectorised numpy.

Why numpy and not inside the ONNX graph: fusion models need the mel of the *whole* file (its
global view is a resize of it), whose length varies from seconds to hours. Computing it here lets
us compute only the frames a clip actually needs (a long file's global view reads 2 frames per
output frame, the local views 3 x 1001 frames), so memory and time are bounded for any length,
and training imports this same module so a model sees identical features in training and serving.

Numbers come from :class:`indexer.audio.spec.AudioFrontend`; nothing here hard-codes them.
Frames are computed one clip at a time, so a clip's features never depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from indexer.audio.spec import AudioFrontend

# read(start, stop) -> float32 samples [start, stop) of a waveform; see ``indexer.audio.decode``.
SampleReader = Callable[[int, int], np.ndarray]


# ----------------------------------------------------------------------------- filter banks
def _hz_to_mel(freq: np.ndarray | float, scale: str) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above (librosa's default).
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = freq / f_sp
    log_region = freq >= min_log_hz
    mel = np.where(log_region, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mel)
    return mel


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=16)
def _mel_filter_bank_cached(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    scale: str,
    norm: str | None,
    triangles: str = "hz",
) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_edges = np.linspace(_hz_to_mel(f_min, scale), _hz_to_mel(f_max, scale), n_mels + 2)
    if triangles == "mel":
        # TensorFlow / VGGish: the triangles are linear in mel, not in Hz, and the DC bin is zeroed.
        # HTK's mel is 2595 log10(1 + f/700) here and 1127 ln(1 + f/700) there: the same curve.
        axis, edges = _hz_to_mel(fft_freqs, scale), mel_edges
    else:
        axis, edges = fft_freqs, _mel_to_hz(mel_edges, scale)
    hz_edges = _mel_to_hz(mel_edges, scale)
    lower = (axis[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    upper = (edges[None, 2:] - axis[:, None]) / np.diff(edges)[None, 1:]
    bank = np.maximum(0.0, np.minimum(lower, upper))  # (n_freq, n_mels) triangles
    if triangles == "mel":
        bank[0] = 0.0
    if norm == "slaney":
        bank *= 2.0 / (hz_edges[2:] - hz_edges[:-2])[None, :]  # equal area per filter
    elif norm == "l1":
        bank /= np.maximum(bank.sum(axis=0, keepdims=True), 1e-30)  # each filter sums to one
    bank = bank.astype(np.float32)
    bank.setflags(write=False)
    return bank


def mel_filter_bank(spec: AudioFrontend) -> np.ndarray:
    """(n_fft//2+1, n_mels) float32 triangular filters as the manifest describes them.

    Slaney scale + Slaney norm equals ``librosa.filters.mel`` (non-fusion LAION checkpoints);
    HTK scale without norm equals torchaudio's default (fusion checkpoints).
    """
    return _mel_filter_bank_cached(
        spec.sample_rate,
        spec.n_fft,
        spec.n_mels,
        spec.f_min,
        spec.f_max,
        spec.mel_scale,
        spec.mel_norm,
        spec.mel_triangles,
    )


@lru_cache(maxsize=16)
def _mel_bands(spec: AudioFrontend) -> tuple[tuple[int, int, np.ndarray], ...]:
    """Each mel filter as (first bin, end bin, weights) over its non-zero support."""
    bank = mel_filter_bank(spec)
    bands = []
    for m in range(bank.shape[1]):
        nonzero = np.flatnonzero(bank[:, m])
        lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (0, 0)
        weights = np.ascontiguousarray(bank[lo:hi, m])
        weights.setflags(write=False)
        bands.append((lo, hi, weights))
    return tuple(bands)


@lru_cache(maxsize=8)
def _window(win_length: int, n_fft: int, align: str = "center") -> np.ndarray:
    n = np.arange(win_length, dtype=np.float64)
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)  # periodic Hann
    left = (n_fft - win_length) // 2 if align == "center" else 0
    win = np.pad(win, (left, n_fft - win_length - left)).astype(np.float32)
    win.setflags(write=False)
    return win


# ----------------------------------------------------------------------------- frames
def num_frames(num_samples: int, spec: AudioFrontend) -> int:
    """STFT frame count of a waveform (centred STFT: one frame per hop, plus one)."""
    if spec.center:
        return num_samples // spec.hop_length + 1
    return max(0, 1 + (num_samples - spec.frame_span) // spec.hop_length)


def _read_span(read: SampleReader, num_samples: int, lo: int, hi: int, pad_mode: str) -> np.ndarray:
    """Samples [lo, hi) of the *padded* signal, synthesising reflect/zero padding past the ends."""
    inner_lo, inner_hi = max(lo, 0), min(hi, num_samples)
    body = read(inner_lo, inner_hi)
    left, right = inner_lo - lo, hi - inner_hi
    if left == 0 and right == 0:
        return body
    if pad_mode == "constant":
        return np.pad(body, (left, right))
    # Reflect (numpy/torch semantics: the edge sample is not repeated).
    parts = []
    if left:
        parts.append(read(1, left + 1)[::-1])
    parts.append(body)
    if right:
        parts.append(read(num_samples - 1 - right, num_samples - 1)[::-1])
    return np.concatenate(parts)


def log_mel_frames(read: SampleReader, num_samples: int, frame_indices: np.ndarray, spec: AudioFrontend) -> np.ndarray:
    """Log-mel of the given STFT frames of a waveform: (len(frame_indices), n_mels) float32.

    Contiguous runs of indices are read as one span, so asking for all frames of a clip is one
    strided rfft; asking for a sparse set (a long file's global view) reads only those frames.
    """
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    if frame_indices.size == 0:
        return np.zeros((0, spec.n_mels), np.float32)
    offset = spec.n_fft // 2 if spec.center else 0
    window = _window(spec.win_length, spec.n_fft, spec.window_align)
    bands = _mel_bands(spec)
    out = np.empty((frame_indices.size, spec.n_mels), np.float32)
    # Split into runs of consecutive indices.
    breaks = np.flatnonzero(np.diff(frame_indices) != 1) + 1
    start = 0
    for run in np.split(frame_indices, breaks):
        first, count = int(run[0]), run.size
        lo = first * spec.hop_length - offset
        hi = lo + (count - 1) * spec.hop_length + spec.n_fft
        span = np.ascontiguousarray(_read_span(read, num_samples, lo, hi, spec.pad_mode), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(span, spec.n_fft)[:: spec.hop_length]
        spectrum = np.fft.rfft(frames * window, axis=-1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32, copy=False)
        if spec.power != 2.0:
            power = power ** (spec.power / 2.0)
        # ``power @ bank`` filter by filter over its non-zero bins, deliberately NOT a BLAS call: a
        # (1001 x 513) @ (513 x 64) product makes OpenBLAS wake its worker threads, which then
        # busy-wait for ~0.1 s on the cores ONNX Runtime needs next (2x slower model call on 2 cores).
        # einsum without ``optimize`` never calls BLAS; the triangles hold 577 of 32 832 entries.
        mel = out[start : start + count]
        for m, (first_bin, end_bin, weights) in enumerate(bands):
            np.einsum("ij,j->i", power[:, first_bin:end_bin], weights, out=mel[:, m])
        start += count
    return _to_log(out, spec)


def _to_log(mel: np.ndarray, spec: AudioFrontend) -> np.ndarray:
    log = spec.log
    if log.kind == "log1p":
        value = np.log10(np.float32(1.0) + np.float32(log.gain) * mel)
    elif log.kind == "ln_eps":
        value = np.log(mel + np.float32(log.amin))
    else:
        value = log.multiplier * np.log10(np.maximum(mel, log.amin))
        value -= log.multiplier * np.log10(max(log.amin, log.ref))
        if log.top_db is not None:
            value = np.maximum(value, value.max() - log.top_db)
    if log.offset != 0.0 or log.divisor != 1.0:
        value = (value - np.float32(log.offset)) / np.float32(log.divisor)
    return value.astype(np.float32)


def log_mel(waveform: np.ndarray, spec: AudioFrontend) -> np.ndarray:
    """Log-mel of a whole in-memory waveform: (num_frames, n_mels) float32."""
    waveform = np.asarray(waveform, dtype=np.float32)
    n = waveform.shape[0]
    return log_mel_frames(lambda a, b: waveform[a:b], n, np.arange(num_frames(n, spec)), spec)
