"""Tempo and key of musical material, with librosa (the ``analysis`` extra).

Tempo: librosa's beat tracker on the onset-strength envelope; the BPM is the slope of a line
through the beat times (the tracker's own tempo is quantised to its frame grid: 143.6 for a
140 BPM click at 22 050 Hz, hop 512). Confidence: the envelope's normalised autocorrelation at
one beat period, 0..1 (a click track ~0.7-0.9, white noise ~0.0).

Key: Krumhansl-Schmuckler. The file's mean constant-Q chroma is correlated with the 24 rotated
Krumhansl-Kessler major and minor profiles; the best is the key, its correlation the
confidence.

Either is None, never a guess, when the material has none: silence, under ``MIN_BEATS`` beats or
a confidence under ``MIN_TEMPO_CONFIDENCE`` (noise, a drone), a best key correlation under
``MIN_KEY_CORRELATION`` or within ``MIN_KEY_MARGIN`` of the runner-up (a lone sine is as much
A major as A minor), or material that is not tonal (over ``MAX_ACTIVE_PITCH_CLASSES`` pitch
classes sounding at once on average). On the demo library's 143 sound effects every key is null
and three get a tempo (a ticking clock at 160, a gallop at 127, a howl at 130).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from indexer.analysis.keys import canonical_key
from indexer.errors import AnalysisUnavailableError

SAMPLE_RATE = 22_050  # librosa's own default: its hop and chroma defaults are tuned for it
HOP = 512
MIN_BEATS = 4
MIN_TEMPO_CONFIDENCE = 0.5  # clicks 0.68-0.9; demo effects under it: a howl at 0.51 is the one it lets by
MIN_KEY_CORRELATION = 0.75  # generated progressions: 0.93-0.96; white noise reached 0.73, a ringing glass 0.73
MIN_KEY_MARGIN = 0.05
# Tonal material lights few pitch classes at a time: the mean, over frames, of the chroma summed
# after scaling each frame's loudest class to 1 is 1.7 for a scale, 3.4-3.6 for triads, but 6-10
# for noise, static, barks and bubbles, whose averaged chroma can still correlate with a profile.
MAX_ACTIVE_PITCH_CLASSES = 5.0
MIN_RMS = 1e-4  # about -80 dBFS: quieter than this is silence, not material to analyse
MIN_SECONDS = 1.0  # shorter than this holds no tempo or key worth stating

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Tempo:
    bpm: float | None
    confidence: float | None


@dataclass(frozen=True)
class Key:
    name: str | None  # "A minor"
    confidence: float | None


def librosa_module():
    """librosa, or a clear error saying how to get it (it is not in the lean runtime)."""
    try:
        import librosa
    except ImportError as exc:
        raise AnalysisUnavailableError(
            "tempo and key analysis needs librosa: pip install 'clapsearch[analysis]' "
            f"(-c constraints.txt) ({exc.__class__.__name__}: {exc})"
        ) from None
    return librosa


@contextmanager
def _quiet() -> Iterator[None]:
    """librosa warns about short inputs (an FFT longer than a downsampled CQT octave) and
    tuning found in no peaks: expected on short or unpitched files, and not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def is_silent(y: np.ndarray, sr: int = SAMPLE_RATE) -> bool:
    """Too short or too quiet to hold a tempo or a key."""
    return len(y) < MIN_SECONDS * sr or float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) < MIN_RMS


def estimate_tempo(y: np.ndarray, sr: int = SAMPLE_RATE) -> Tempo:
    """BPM and confidence of a mono waveform (``(n,)`` float32)."""
    if is_silent(y, sr):
        return Tempo(None, None)
    librosa = librosa_module()
    with _quiet():
        envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)
    centred = envelope - envelope.mean()
    energy = float(np.dot(centred, centred))
    if energy <= 0:
        return Tempo(None, None)
    with _quiet():
        _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=HOP, units="time")
    beats = np.asarray(beats, dtype=np.float64)
    if len(beats) < MIN_BEATS:
        return Tempo(None, 0.0)
    period_s = float(np.polyfit(np.arange(len(beats)), beats, 1)[0])
    if not period_s > 0:
        return Tempo(None, 0.0)
    lag = period_s * sr / HOP
    autocorrelation = np.correlate(centred, centred, "full")[len(centred) - 1 :] / energy
    confidence = float(np.clip(np.interp(lag, np.arange(len(autocorrelation)), autocorrelation), 0.0, 1.0))
    bpm = 60.0 / period_s
    if confidence < MIN_TEMPO_CONFIDENCE:
        return Tempo(None, round(confidence, 3))
    return Tempo(round(bpm, 2), round(confidence, 3))


def key_scores(chroma: np.ndarray) -> list[tuple[float, str]]:
    """(correlation, key name) for all 24 keys, best first, of a 12-bin chroma (C first)."""
    if not np.ptp(chroma) > 0:
        return []
    scores = []
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            scores.append((float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), canonical_key(tonic, mode)))
    return sorted(scores, reverse=True)


def estimate_key(y: np.ndarray, sr: int = SAMPLE_RATE) -> Key:
    """Key name and confidence of a mono waveform."""
    if is_silent(y, sr):
        return Key(None, None)
    librosa = librosa_module()
    with _quiet():
        frames = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP)  # (12, n), each frame's max is 1
    if float(frames.sum(axis=0).mean()) > MAX_ACTIVE_PITCH_CLASSES:
        return Key(None, None)
    scores = key_scores(np.asarray(frames.mean(axis=1), dtype=np.float64))
    if not scores:
        return Key(None, None)
    (best, name), (second, _) = scores[0], scores[1]
    confidence = round(max(best, 0.0), 3)
    if best < MIN_KEY_CORRELATION or best - second < MIN_KEY_MARGIN:
        return Key(None, confidence)
    return Key(name, confidence)
