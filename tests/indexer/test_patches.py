"""Patch front end (YAMNet family): geometry, padding rule, streaming, and parity with an
independent TensorFlow-style reference written here from the published recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.audio.clip import waveform_views
from indexer.audio.frontend import mel_filter_bank
from indexer.audio.patches import (
    clip_frames,
    frames_to_patches,
    iter_patch_chunks,
    padded_length,
    patch_count,
    patch_samples,
)
from indexer.models.manifest import AudioFrontend
from tests.helpers import tone
from training.models.config import YAMNET_FRONTEND

SPEC = AudioFrontend(**YAMNET_FRONTEND)
YAMNET_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/pretrained/yamnet"


def _reader(wave: np.ndarray):
    return lambda a, b: wave[a:b]


def _tf_reference(wave: np.ndarray) -> np.ndarray:
    """tf.signal.stft (400-sample periodic Hann at the frame start, 512-point FFT, magnitude) +
    linear_to_mel_weight_matrix (HTK mel, triangles on the mel axis, DC row zero) + log(x + 0.001)."""
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    n = 1 + (len(wave) - 400) // 160
    frames = np.stack([wave[i * 160 : i * 160 + 400] * win for i in range(n)])
    magnitude = np.abs(np.fft.rfft(frames, 512))
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    bins = mel(np.linspace(0, 8000, 257)[1:])[:, None]
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    bank = np.maximum(0, np.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center)))
    bank = np.vstack([np.zeros((1, 64)), bank])
    return np.log(magnitude @ bank + 0.001)


@pytest.mark.parametrize(
    "n, patches",
    [(1, 1), (8_000, 1), (15_600, 1), (15_601, 2), (15_600 + 7_680, 2), (15_600 + 7_681, 3), (16_000 * 60, 124)],
)
def test_patch_geometry_covers_every_sample(n, patches):
    assert patch_count(n, SPEC) == patches
    length = padded_length(n, SPEC)
    assert length >= n and length - patch_samples(SPEC) < n + 7_680
    frames = clip_frames(_reader(np.zeros(n, np.float32)), n, SPEC)
    assert frames_to_patches(frames, SPEC).shape == (patches, 96, 64)


def test_mel_bank_matches_tensorflow_construction():
    ref = _tf_reference(np.zeros(400))  # builds the same bank; compare the bank directly
    assert ref.shape == (1, 64)
    bank = mel_filter_bank(SPEC)
    assert bank.shape == (257, 64) and np.all(bank[0] == 0)


def test_front_end_matches_independent_reference():
    wave = tone(3, 16_000, amplitude=0.4, noise=0.1)
    ours = clip_frames(_reader(wave), wave.size, SPEC)
    ref = _tf_reference(np.concatenate([wave, np.zeros(padded_length(wave.size, SPEC) - wave.size)]))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 2e-3  # float32 FFT vs float64; log near 0.001 amplifies


@pytest.mark.parametrize("chunk", [1, 3, 7, 256])
def test_streamed_chunks_are_bit_identical_to_whole_file(chunk):
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(16_000 * 9 + 123)).astype(np.float32)
    whole = frames_to_patches(clip_frames(_reader(wave), wave.size, SPEC), SPEC)
    streamed = np.concatenate(list(iter_patch_chunks(_reader(wave), wave.size, SPEC, chunk=chunk)))
    assert np.array_equal(whole, streamed)


def test_view_is_all_frames_of_the_file_without_crop():
    wave = np.ones(16_000 * 40, np.float32) * 0.1  # 40 s: far past the 5.3 s training crop
    views = waveform_views(wave, SPEC)
    assert views.features.shape == (1, 96 + 48 * (patch_count(wave.size, SPEC) - 1), 64)


@pytest.mark.parametrize("kind", ["silence", "dc", "clipped", "short"])
def test_edge_signals_give_finite_features(kind):
    n = 16_000 * 2
    wave = {
        "silence": np.zeros(n),
        "dc": np.full(n, 0.5),
        "clipped": np.clip(np.sin(np.arange(n)) * 5, -1, 1),
        "short": np.sin(np.arange(400) * 0.3),
    }[kind].astype(np.float32)
    frames = waveform_views(wave, SPEC).features[0]
    assert np.isfinite(frames).all()
    if kind == "silence":
        assert np.allclose(frames, np.log(0.001))
    if kind == "short":  # shorter than one patch: one patch, sound then zero fill
        assert (
            frames.shape == (96, 64) and frames[0].max() > np.log(0.001) + 1 and np.allclose(frames[-1], np.log(0.001))
        )


def test_patch_mean_manifest_rules():
    with pytest.raises(ValueError):
        AudioFrontend(**{**YAMNET_FRONTEND, "patch_frames": None})
    with pytest.raises(ValueError):
        AudioFrontend(**{**YAMNET_FRONTEND, "center": True})
    with pytest.raises(ValueError):
        AudioFrontend(**{**YAMNET_FRONTEND, "clip_samples": 16_000})


@pytest.mark.skipif(not YAMNET_DIR.is_dir(), reason="../shared/data/pretrained/yamnet not present")
def test_published_test_patch_has_the_same_shape_of_spectrum():
    """The shipped test patch came from the device's fixed-point front end: it is our spectrum up
    to a constant gain (ln 4.1 = +1.41) and small deviations, so compare after removing the offset."""
    audio = np.fromfile(YAMNET_DIR / "yamnet_test_audio.bin", dtype=np.int16).astype(np.float32) / 32768
    spectra = np.fromfile(YAMNET_DIR / "yamnet_test_spectra.bin", dtype=np.float32).reshape(96, 64)
    ours = clip_frames(_reader(audio), audio.size, SPEC)
    assert ours.shape == (96, 64)
    diff = spectra - ours
    assert abs(diff.mean() - np.log(4.1)) < 0.05
    assert np.corrcoef(spectra.ravel(), ours.ravel())[0, 1] > 0.999


def test_clip_frames_in_chunks_equal_one_pass():
    from indexer.audio import patches as P
    from indexer.audio.frontend import log_mel_frames

    rng = np.random.default_rng(3)
    wave = (0.2 * rng.standard_normal(16_000 * 50)).astype(np.float32)  # > one FRAME_CHUNK
    chunked = clip_frames(_reader(wave), wave.size, SPEC)
    length = padded_length(wave.size, SPEC)
    whole = log_mel_frames(P.zero_filled(_reader(wave), wave.size), length, np.arange(chunked.shape[0]), SPEC)
    assert chunked.shape[0] > P.FRAME_CHUNK and np.array_equal(chunked, whole)
