"""Integrated loudness in LUFS after ITU-R BS.1770-4 (EBU R 128): K-weighting, 400 ms blocks
every 100 ms, an absolute gate at -70 LUFS and a relative gate 10 LU below the mean.

    meter = LoudnessMeter(sample_rate=44100, channels=2)
    for block in blocks:                 # (frames, channels) float, any block sizes
        meter.feed(block)
    meter.integrated()                   # -23.0, or None for silence / under 400 ms

Streaming (the filters carry their state across blocks, energies are kept per 100 ms step), so
an hour-long file costs 36 000 numbers per channel, not its samples. numpy + scipy only.

Calibration (tests/indexer/test_analysis.py): a full-scale 997 Hz sine in one channel reads
-3.01 LUFS, a -23 dBFS 1 kHz sine in both channels of a stereo file -23.0 (EBU Tech 3341 case 1).
"""

from __future__ import annotations

import math

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
BLOCK_S, STEP_S = 0.4, 0.1
STEPS_PER_BLOCK = 4
_OFFSET = -0.691  # BS.1770's constant: a 1 kHz full-scale sine in one channel reads -3.01 LUFS

# Channel weights for 5.1 in the order L, R, C, LFE, Ls, Rs (BS.1770: LFE left out, surrounds
# +1.5 dB); any other layout weighs every channel 1.0.
_SURROUND_51 = (1.0, 1.0, 1.0, 0.0, 1.41, 1.41)


def k_weighting(sample_rate: int) -> np.ndarray:
    """The K filter (high shelf + high pass) as second-order sections for ``sample_rate``.

    The two biquads are designed from their analogue prototypes (libebur128's formulas), so at
    48 kHz they are BS.1770's published coefficients and at any other rate the same response."""
    fs = float(sample_rate)
    # stage 1: the head's acoustic effect, a +4 dB shelf above ~1.7 kHz
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / fs)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2 * (k * k - 1) / a0,
        (1 - k / q + k * k) / a0,
    ]
    # stage 2: RLB high pass at ~38 Hz
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / fs)
    a0 = 1 + k / q + k * k
    high_pass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, high_pass], dtype=np.float64)


def channel_weights(channels: int) -> np.ndarray:
    return np.array(_SURROUND_51 if channels == 6 else (1.0,) * channels, dtype=np.float64)


class LoudnessMeter:
    """Integrated loudness of a stream of (frames, channels) blocks at one sample rate."""

    def __init__(self, sample_rate: int, channels: int):
        from scipy.signal import sosfilt_zi

        if sample_rate < 1000 or channels < 1:
            raise ValueError("LoudnessMeter needs sample_rate >= 1000 and channels >= 1")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.sos = k_weighting(self.sample_rate)
        # the filters start at rest (zero state), as for a signal preceded by silence
        self.zi = np.zeros((channels, *sosfilt_zi(self.sos).shape))
        self.step = max(1, round(STEP_S * self.sample_rate))
        self.weights = channel_weights(self.channels)
        self._pending = np.zeros((0, channels))  # filtered samples not yet a whole step
        self._steps: list[np.ndarray] = []  # per step: sum of squares per channel

    def feed(self, block: np.ndarray) -> None:
        from scipy.signal import sosfilt

        frames = np.asarray(block, dtype=np.float64)
        if frames.ndim == 1:
            frames = frames[:, None]
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        if not len(frames):
            return
        filtered = np.empty_like(frames)
        for c in range(self.channels):
            filtered[:, c], self.zi[c] = sosfilt(self.sos, frames[:, c], zi=self.zi[c])
        data = np.concatenate([self._pending, filtered]) if len(self._pending) else filtered
        whole = len(data) // self.step * self.step
        if whole:
            squares = np.square(data[:whole]).reshape(-1, self.step, self.channels).sum(axis=1)
            self._steps.append(squares)
        self._pending = data[whole:]

    def integrated(self) -> float | None:
        """LUFS over everything fed, gated; None when no 400 ms block passes the absolute gate
        (silence, or under 400 ms of audio): no number is better than -inf or -70."""
        if not self._steps:
            return None
        steps = np.concatenate(self._steps)
        if len(steps) < STEPS_PER_BLOCK:
            return None
        # block j covers steps j..j+3: a 400 ms window every 100 ms (75 % overlap)
        cumulative = np.concatenate([np.zeros((1, self.channels)), np.cumsum(steps, axis=0)])
        block_sums = cumulative[STEPS_PER_BLOCK:] - cumulative[:-STEPS_PER_BLOCK]
        mean_squares = block_sums / (STEPS_PER_BLOCK * self.step)  # (blocks, channels)
        weighted = mean_squares @ self.weights
        with np.errstate(divide="ignore"):
            block_lufs = _OFFSET + 10 * np.log10(weighted)
        above_absolute = block_lufs > ABSOLUTE_GATE_LUFS
        if not above_absolute.any():
            return None
        relative_gate = _loudness(mean_squares[above_absolute], self.weights) + RELATIVE_GATE_LU
        kept = above_absolute & (block_lufs > relative_gate)
        if not kept.any():
            return None
        return float(_loudness(mean_squares[kept], self.weights))


def _loudness(mean_squares: np.ndarray, weights: np.ndarray) -> float:
    return _OFFSET + 10 * math.log10(float(mean_squares.mean(axis=0) @ weights))


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """LUFS of a whole (frames,) or (frames, channels) array (see ``LoudnessMeter``)."""
    frames = np.asarray(samples)
    meter = LoudnessMeter(sample_rate, 1 if frames.ndim == 1 else frames.shape[1])
    meter.feed(frames)
    return meter.integrated()
