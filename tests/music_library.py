"""Generated musical material with known tempo, key and loudness, for the analysis tests
(``indexer analyze``, the bpm/key filters): click tracks, I-IV-V-I chord progressions of
harmonic tones, pink noise at a set level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

NOTE_NAMES = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10, "B": 11}


def click_track(bpm: float, seconds: float = 20.0, sr: int = 22_050, *, freq: float = 1000.0) -> np.ndarray:
    """A metronome: a 20 ms decaying ``freq`` Hz click every beat, from t = 0."""
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(0.02 * sr)
    t = np.arange(n) / sr
    click = (0.8 * np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.004)).astype(np.float32)
    beat = 0.0
    while beat < seconds - 0.05:
        i = int(round(beat * sr))
        y[i : i + n] += click[: len(y[i : i + n])]
        beat += 60.0 / bpm
    return y


def _note(midi: int, seconds: float, sr: int) -> np.ndarray:
    f = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * sr)) / sr
    return sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5)) * np.exp(-1.5 * t)


def chord_progression(key: str, sr: int = 22_050, *, chord_s: float = 1.0, rounds: int = 2) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-V-i (minor, with the raised leading tone) in ``key`` ("A minor")."""
    note, mode = key.split()
    tonic = 60 + NOTE_NAMES[note] - (12 if NOTE_NAMES[note] > 6 else 0)
    third = 3 if mode == "minor" else 4
    chords = [
        [tonic, tonic + third, tonic + 7],
        [tonic + 5, tonic + 5 + third, tonic + 12],
        [tonic + 7, tonic + 11, tonic + 14],
        [tonic, tonic + third, tonic + 7],
    ] * rounds
    y = np.concatenate([sum(_note(m, chord_s, sr) for m in c) / 3 for c in chords])
    return (0.5 * y).astype(np.float32)


def pink_noise(seconds: float, sr: int, rms_dbfs: float, *, seed: int = 0) -> np.ndarray:
    """Pink (1/f power) noise whose RMS is ``rms_dbfs`` dB below a full-scale square wave."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    y = np.fft.irfft(spectrum, n)
    y *= 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(y**2))
    return y.astype(np.float32)


def write_wav(path: Path, y: np.ndarray, sr: int = 22_050, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, subtype=subtype)
    return path


def musical_library(root: Path) -> dict[str, Path]:
    """name -> path: clicks at 90 and 120 BPM, A minor and C major progressions, noise, silence."""
    rng = np.random.default_rng(3)
    return {
        "click_90": write_wav(root / "click_90.wav", click_track(90, 12)),
        "click_120": write_wav(root / "click_120.wav", click_track(120, 12)),
        "a_minor": write_wav(root / "a_minor.wav", chord_progression("A minor")),
        "c_major": write_wav(root / "c_major.wav", chord_progression("C major")),
        "noise": write_wav(root / "noise.wav", (0.1 * rng.standard_normal(22_050 * 6)).astype(np.float32)),
        "silence": write_wav(root / "silence.wav", np.zeros(22_050 * 3, np.float32)),
    }
