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
def _mel_bands(spec: AudioFrontend) -> tuple[int, int, tuple[tuple[int, int, np.ndarray], ...]]:
    """The bins any filter reads, ``[band_lo, band_hi)``, and each mel filter as (first bin, end bin,
    weights) over its non-zero support, counted from ``band_lo`` (an all-zero filter: empty)."""
    bank = mel_filter_bank(spec)
    used = np.flatnonzero(bank.any(axis=1))
    band_lo, band_hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    bands = []
    for m in range(bank.shape[1]):
        nonzero = np.flatnonzero(bank[:, m])
        lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (band_lo, band_lo)
        weights = np.ascontiguousarray(bank[lo:hi, m])
        weights.setflags(write=False)
        bands.append((lo - band_lo, hi - band_lo, weights))
    return band_lo, band_hi, tuple(bands)


@lru_cache(maxsize=8)
def _window(win_length: int, n_fft: int, align: str = "center") -> np.ndarray:
    n = np.arange(win_length, dtype=np.float64)
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)  # periodic Hann
    left = (n_fft - win_length) // 2 if align == "center" else 0
    win = np.pad(win, (left, n_fft - win_length - left)).astype(np.float32)
    win.setflags(write=False)
    return win


# ----------------------------------------------------------------------------- frames
# Frames per FFT block: the block's frames and spectrum (256 x 1024 float32 + 256 x 513 complex64,
# 2 MB) stay near the 1 MB L2 cache; for a 60 s fused file's 4003 frames, 256 measured fastest of
# 64..4096 (15 ms against 24 at 64 and 40 at 4096, 2-core EPYC). numpy's float32 rfft, not float64:
# faster in blocks this size, and what the parity tests were set against.
FFT_BLOCK_FRAMES = 256
# Wanted frames whose samples lie at most this far apart are read as ONE span and cut from it: a
# long file's global view reads 2 frames of every 6 (60 s) to 170 (4 h), and one read per pair
# cost more Python than copying the few kB between them. Spans stay under MAX_SPAN_SAMPLES, so a
# file streamed from disk is never read whole.
MERGE_GAP_SAMPLES = 1 << 15
MAX_SPAN_SAMPLES = 1 << 20


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


def _spans(starts: np.ndarray, frame_span: int) -> list[tuple[int, int]]:
    """``[a, b)`` runs of ``starts`` (first sample of each wanted frame) to read as one span each:
    increasing, at most ``MERGE_GAP_SAMPLES`` apart, at most ``MAX_SPAN_SAMPLES`` long."""
    step = np.diff(starts)
    breaks = np.flatnonzero((step <= 0) | (step > MERGE_GAP_SAMPLES + frame_span)) + 1
    bounds = np.concatenate(([0], breaks, [starts.size]))
    spans = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        while a < b:  # cut an over-long run where its span would pass MAX_SPAN_SAMPLES
            stop = a + 1 + int(np.searchsorted(starts[a + 1 : b], starts[a] + MAX_SPAN_SAMPLES - frame_span, "right"))
            spans.append((a, stop))
            a = stop
    return spans


def log_mel_frames(read: SampleReader, num_samples: int, frame_indices: np.ndarray, spec: AudioFrontend) -> np.ndarray:
    """Log-mel of the given STFT frames of a waveform: (len(frame_indices), n_mels) float32.

    Each wanted frame is computed once, whatever view wants it: nearby frames are cut from one
    read span (:func:`_spans`) into a block of ``FFT_BLOCK_FRAMES`` rows, and each block is one
    windowing, one row-wise rfft and one banded mel product (:func:`_mel_block`). A frame's value
    does not depend on its block (the FFT and the mel product work row by row), so sparse and
    full computations agree and a clip's features never depend on its batch.
    """
    idx = np.asarray(frame_indices, dtype=np.int64)
    out = np.zeros((idx.size, spec.n_mels), np.float32)
    if idx.size == 0:
        return out
    hop, n_fft = spec.hop_length, spec.n_fft
    starts = idx * hop - (n_fft // 2 if spec.center else 0)
    block = np.empty((min(FFT_BLOCK_FRAMES, idx.size), n_fft), np.float32)
    filled = done = 0
    for a, b in _spans(starts, n_fft):
        span = _read_span(read, num_samples, int(starts[a]), int(starts[b - 1]) + n_fft, spec.pad_mode)
        windows = np.lib.stride_tricks.sliding_window_view(np.asarray(span, dtype=np.float32), n_fft)
        offsets = starts[a:b] - starts[a]
        pos = 0
        while pos < offsets.size:
            count = min(block.shape[0] - filled, offsets.size - pos)
            # Fancy indexing gathers the rows through the strided view (np.take would first copy
            # the whole view: n_fft times the span).
            block[filled : filled + count] = windows[offsets[pos : pos + count]]
            filled, pos = filled + count, pos + count
            if filled == block.shape[0]:
                _mel_block(block, out[done : done + filled], spec)
                done, filled = done + filled, 0
    if filled:
        _mel_block(block[:filled], out[done : done + filled], spec)
    return _to_log(out, spec)


def _mel_block(frames: np.ndarray, out: np.ndarray, spec: AudioFrontend) -> None:
    """Window (in place), rfft and mel power of a block of frames into ``out`` (rows x n_mels)."""
    frames *= _window(spec.win_length, spec.n_fft, spec.window_align)
    band_lo, band_hi, bands = _mel_bands(spec)
    spectrum = np.fft.rfft(frames, axis=-1)[:, band_lo:band_hi]  # only bins a filter reads
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    if spec.power != 2.0:
        power **= spec.power / 2.0
    # ``power @ bank`` filter by filter over its non-zero bins, deliberately NOT a BLAS call: a
    # (1001 x 513) @ (513 x 64) product makes OpenBLAS wake its worker threads, which then
    # busy-wait for ~0.1 s on the cores ONNX Runtime needs next (2x slower model call on 2 cores).
    # einsum without ``optimize`` never calls BLAS; the triangles hold 577 of 32 832 entries, and
    # per block this is 64 small calls (1.5 ms for 4000 frames; scipy.sparse: 1.7 ms, BLAS: 7 ms).
    for m, (first_bin, end_bin, weights) in enumerate(bands):
        if end_bin > first_bin:
            np.einsum("ij,j->i", power[:, first_bin:end_bin], weights, out=out[:, m])


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
