"""The numpy front end against the references: librosa's and transformers' filter banks, and
transformers' ClapFeatureExtractor log-mel for both public front-end flavours."""

import numpy as np
import pytest

from indexer.audio.frontend import log_mel, log_mel_frames, mel_filter_bank, num_frames
from indexer.models.manifest import AudioFrontend
from tests.helpers import tone

SLANEY = AudioFrontend(mel_scale="slaney", mel_norm="slaney", long_policy="center_crop")
HTK = AudioFrontend(mel_scale="htk", mel_norm=None, long_policy="fusion")


def _signal(seconds=10.0, sr=48_000, seed=0):
    x = tone(seconds, sr, amplitude=0.4, noise=0.1, seed=seed)
    x[: sr // 2] = 0.0  # digital silence exercises the amin floor
    return x


def test_slaney_bank_equals_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=48_000, n_fft=1024, n_mels=64, fmin=50, fmax=14_000).T
    np.testing.assert_allclose(mel_filter_bank(SLANEY), ref, atol=1e-8)


@pytest.mark.parametrize("spec,scale,norm", [(SLANEY, "slaney", "slaney"), (HTK, "htk", None)])
def test_bank_equals_transformers(spec, scale, norm):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ref = audio_utils.mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=50,
        max_frequency=14_000,
        sampling_rate=48_000,
        norm=norm,
        mel_scale=scale,
    )
    np.testing.assert_allclose(mel_filter_bank(spec), ref, atol=1e-7)


@pytest.mark.parametrize("spec,truncation", [(SLANEY, "rand_trunc"), (HTK, "fusion")])
def test_log_mel_matches_clap_feature_extractor(spec, truncation):
    transformers = pytest.importorskip("transformers")
    x = _signal()
    extractor = transformers.ClapFeatureExtractor(
        frequency_min=50, frequency_max=14_000, truncation=truncation, padding="repeatpad"
    )
    ref = extractor(x, sampling_rate=48_000, return_tensors="np")["input_features"][0, 0]
    ours = log_mel(x, spec)
    assert ours.shape == ref.shape == (1001, 64)
    # float32 STFT vs the reference's float64: a few 1e-4 dB, far below what moves an embedding.
    assert np.abs(ours - ref).max() < 2e-3
    assert ours.min() >= -100.001  # the 1e-10 floor: 10*log10(1e-10), float32-rounded


def test_sparse_frames_equal_full_computation():
    x = _signal(seconds=13.7, seed=3)
    full = log_mel(x, HTK)
    assert full.shape[0] == num_frames(x.size, HTK) == x.size // 480 + 1
    picks = np.array([0, 1, 2, 7, 500, 501, full.shape[0] - 2, full.shape[0] - 1])
    sparse = log_mel_frames(lambda a, b: x[a:b], x.size, picks, HTK)
    # Edges use synthetic reflect padding. Not bitwise: pocketfft groups rows for SIMD, so a frame
    # computed in a run of 3 vs 1000 frames can differ in the last float32 bits (~1e-6 dB). Each
    # file always takes the same runs, so a file's vector is still deterministic.
    np.testing.assert_allclose(sparse, full[picks], atol=1e-5)


@pytest.mark.parametrize("gap,span", [(1 << 15, 1 << 20), (0, 4096), (5000, 30_000)])
def test_frames_from_merged_and_cut_spans_equal_full_computation(monkeypatch, gap, span):
    """A long file's global view reads 2 frames of every few: nearby frames come from one read
    span, far ones from their own, long runs are cut; any mix gives the frames the full STFT gives,
    in the order asked (also out of order and repeated), and reads never exceed the span limit."""
    import indexer.audio.frontend as frontend

    monkeypatch.setattr(frontend, "MERGE_GAP_SAMPLES", gap)
    monkeypatch.setattr(frontend, "MAX_SPAN_SAMPLES", span)
    x = _signal(seconds=25.0, seed=4)
    full = log_mel(x, HTK)
    total = full.shape[0]
    picks = np.concatenate([np.arange(0, total, 6), np.arange(1, total, 6), np.arange(700, 1900), [3, 3, total - 1, 0]])
    reads = []

    def read(a, b):
        reads.append(b - a)
        return x[a:b]

    sparse = log_mel_frames(read, x.size, picks, HTK)
    np.testing.assert_allclose(sparse, full[picks], atol=1e-5)
    assert max(reads) <= span


def test_reflect_padding_matches_numpy_pad():
    x = _signal(seconds=10.0, seed=5)
    spec = HTK
    padded = np.pad(x, (512, 512), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 1024)[::480]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(frames * window)) ** 2
    ref = 10 * np.log10(np.maximum(power @ mel_filter_bank(spec).astype(np.float64), 1e-10))
    assert np.abs(log_mel(x, spec) - ref).max() < 2e-3


def test_aisfx_style_front_end_matches_librosa():
    """log10(1 + 10000 * mel) / 9.4578 on L1-normalised HTK filters (the aisfx CNN's input)."""
    librosa = pytest.importorskip("librosa")
    from indexer.models.manifest import AudioFrontend, LogSpec

    spec = AudioFrontend(
        sample_rate=44_100,
        clip_samples=5 * 44_100,
        n_fft=2048,
        win_length=2048,
        hop_length=1024,
        n_mels=96,
        f_min=0.0,
        f_max=22_050.0,
        mel_scale="htk",
        mel_norm="l1",
        pad_mode="constant",
        log=LogSpec(kind="log1p", gain=10_000.0, divisor=9.457798957824707),
    )
    rng = np.random.default_rng(3)
    y = (0.2 * rng.standard_normal(3 * 44_100)).astype(np.float32)
    ours = log_mel(y, spec)
    ref = librosa.feature.melspectrogram(
        y=y,
        sr=44_100,
        n_fft=2048,
        hop_length=1024,
        win_length=2048,
        n_mels=96,
        fmin=0.0,
        fmax=22_050.0,
        htk=True,
        norm=1.0,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    expected = np.log10(1 + 10_000 * ref.T) / 9.457798957824707
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-4


def test_peak_normalize_makes_features_gain_invariant():
    from indexer.audio.clip import waveform_views
    from indexer.models.manifest import AudioFrontend

    spec = AudioFrontend(
        sample_rate=16_000,
        clip_samples=16_000,
        n_fft=512,
        win_length=512,
        hop_length=160,
        n_mels=32,
        f_max=8000,
        peak_normalize=True,
    )
    rng = np.random.default_rng(1)
    for seconds in (0.4, 2.5):  # a repeat-padded short clip and a centre-cropped long one
        y = (0.5 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32)
        loud, quiet = waveform_views(y, spec), waveform_views(0.01 * y, spec)
        assert np.abs(loud.features - quiet.features).max() < 1e-3
    with pytest.raises(ValueError, match="fusion"):
        AudioFrontend(long_policy="fusion", peak_normalize=True)
