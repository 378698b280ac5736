"""Property-based tests (Hypothesis) of decoding and preprocessing: for arbitrary PCM arrays,
sample rates and channel counts, the front end's output is finite, shaped as documented and
deterministic, or the input is refused with a typed AudioError; resampling keeps its
invariants; a file and the same samples in memory give the same waveform.

CI runs a bounded number of examples per property (Hypothesis profile ``ci``, registered in
tests/conftest.py); ``CLAPSEARCH_TEST_LONG=1`` selects the ``long`` profile (see docs/reliability.md).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from indexer.audio.clip import ClipViews  # noqa: E402
from indexer.audio.decode import DecodeLimits, load_audio, prepare_waveform  # noqa: E402
from indexer.audio.frontend import num_frames  # noqa: E402
from indexer.audio.patches import total_frames  # noqa: E402
from indexer.audio.spec import AudioFrontend  # noqa: E402
from indexer.audio.stream import MAX_SAMPLE_MAGNITUDE, resampled_length  # noqa: E402
from indexer.audio.views import array_views  # noqa: E402
from indexer.errors import AudioError, InvalidSamplesError  # noqa: E402
from indexer.models.manifest import load_manifest  # noqa: E402
from tests.conftest import REPO  # noqa: E402

LIMITS = DecodeLimits(max_channels=16)
RATES = st.sampled_from([1000, 8000, 11025, 16000, 22050, 44100, 48000, 96000]) | st.integers(1000, 200_000)
SPECS = {
    "v2-patches": load_manifest(REPO / "models" / "clapsearch-sfx-v2").audio_frontend,
    "v1-crop": load_manifest(REPO / "models" / "clapsearch-sfx-v1").audio_frontend,
    "fusion": AudioFrontend(mel_scale="htk", mel_norm=None, long_policy="fusion"),
}


@st.composite
def pcm(draw, max_frames: int = 3000, finite: bool = True) -> np.ndarray:
    """An (n,) or (n, channels) array of float32/float64/int16/int32/uint8 samples."""
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.int32, np.uint8]))
    frames = draw(st.integers(1, max_frames))
    channels = draw(st.none() | st.integers(1, 8))
    shape = (frames,) if channels is None else (frames, channels)
    if np.dtype(dtype).kind == "f":
        bound = MAX_SAMPLE_MAGNITUDE if draw(st.booleans()) else 1.0
        elements = st.floats(-bound, bound, width=32)
        if not finite:  # anything a float file may hold: NaN, infinities, 1e30...
            elements = elements | st.floats(width=32)
    else:
        elements = None  # the whole integer range
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _expected_shape(n: int, spec: AudioFrontend) -> tuple[int, int, int]:
    if spec.long_policy == "patch_mean":
        return (1, total_frames(n, spec), spec.n_mels)
    return (4 if spec.long_policy == "fusion" else 1, num_frames(spec.clip_samples, spec), spec.n_mels)


@given(samples=pcm(), rate=RATES, target=st.sampled_from([16000, 44100, 48000]))
def test_prepare_waveform_is_finite_mono_of_the_documented_length_and_deterministic(samples, rate, target):
    before = samples.copy()
    y = prepare_waveform(samples, rate, target, limits=LIMITS)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape[0] == resampled_length(samples.shape[0], rate, target)
    assert np.isfinite(y).all()
    assert np.array_equal(prepare_waveform(samples, rate, target, limits=LIMITS), y)
    assert np.array_equal(samples, before)  # the caller's buffer is untouched


@given(samples=pcm(max_frames=500, finite=False), rate=RATES)
def test_non_finite_or_absurd_samples_are_refused_never_passed_on(samples, rate):
    as_float = samples.astype(np.float64)  # integers are scaled to +-1: always usable
    usable = samples.dtype.kind != "f" or np.all(np.abs(as_float) <= MAX_SAMPLE_MAGNITUDE)
    if usable:
        assert np.isfinite(prepare_waveform(samples, rate, 16000, limits=LIMITS)).all()
    else:
        with pytest.raises(InvalidSamplesError):
            prepare_waveform(samples, rate, 16000, limits=LIMITS)


@given(
    shape=st.tuples(st.integers(0, 40), st.integers(0, 80))
    | st.tuples(st.integers(0, 5), st.integers(0, 5), st.just(2)),
    rate=st.integers(-10, 2_000_000) | st.floats(allow_nan=True),
)
@example(shape=(10, 1), rate=float("nan"))  # found by the long mode: ValueError, not a typed error
@example(shape=(10, 1), rate=float("inf"))  # OverflowError
def test_any_other_shape_or_rate_is_a_typed_error_or_a_waveform(shape, rate):
    samples = np.zeros(shape, np.float32)
    try:
        y = prepare_waveform(samples, rate, 16000, limits=LIMITS)
    except AudioError:
        return
    assert y.ndim == 1 and np.isfinite(y).all()


@given(data=st.data(), spec_name=st.sampled_from(sorted(SPECS)))
def test_front_end_views_are_finite_shaped_as_documented_and_deterministic(data, spec_name):
    spec = SPECS[spec_name]
    samples = data.draw(pcm(max_frames=4000))
    rate = data.draw(RATES)
    views = array_views(samples, rate, spec, limits=LIMITS)
    assert isinstance(views, ClipViews) and views.features.dtype == np.float32
    n = resampled_length(samples.shape[0], rate, spec.sample_rate)
    assert views.features.shape == _expected_shape(n, spec)
    assert np.isfinite(views.features).all()
    again = array_views(samples, rate, spec, limits=LIMITS)
    assert np.array_equal(again.features, views.features) and again.is_longer == views.is_longer


@given(frames=st.integers(1, 3000), rate=RATES, target=st.sampled_from([16000, 48000]))
def test_resampling_silence_gives_silence_and_a_rate_change_of_one_is_identity(frames, rate, target):
    silent = prepare_waveform(np.zeros(frames, np.float32), rate, target, limits=LIMITS)
    assert silent.shape[0] == resampled_length(frames, rate, target) and not silent.any()
    x = np.random.default_rng(frames).uniform(-1, 1, frames).astype(np.float32)
    assert np.array_equal(prepare_waveform(x, target, target, limits=LIMITS), x)


@given(samples=pcm(max_frames=2000), rate=RATES, scale=st.floats(0.001, 100.0))
def test_resampling_is_linear_and_channels_of_one_signal_mix_to_it(samples, rate, scale):
    mono = samples.astype(np.float64)
    mono = (mono if mono.ndim == 1 else mono[:, 0]) / max(1.0, float(np.abs(mono).max()))
    mono = mono.astype(np.float32)
    y = prepare_waveform(mono, rate, 16000, limits=LIMITS)
    scaled = prepare_waveform(mono * np.float32(scale), rate, 16000, limits=LIMITS)
    assert np.allclose(scaled, y * np.float32(scale), rtol=1e-3, atol=1e-5 * scale)
    copies = np.repeat(mono[:, None], 3, axis=1)
    assert np.allclose(prepare_waveform(copies, rate, 16000, limits=LIMITS), y, atol=1e-6)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One folder for the file property (module scope: Hypothesis runs many examples per call)."""
    return tmp_path_factory.mktemp("props")


@given(
    frames=st.integers(1, 4000),
    channels=st.integers(1, 6),
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000]),
    fmt=st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("AIFF", "PCM_16")]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_file_and_its_samples_in_memory_give_the_same_waveform(scratch, frames, channels, rate, fmt, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, (frames, channels)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt[0], subtype=fmt[1])
    data = buf.getvalue()
    path = scratch / f"clip.{fmt[0].lower()}"
    path.write_bytes(data)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    from_file = load_audio(path, 16000, limits=LIMITS)
    assert np.array_equal(from_file, prepare_waveform(decoded, rate, 16000, limits=LIMITS))
    assert from_file.shape[0] == resampled_length(frames, rate, 16000)
