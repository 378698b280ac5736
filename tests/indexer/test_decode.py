"""Behaviour of indexer.audio.decode: exact librosa parity, formats, typed errors, streaming."""

from __future__ import annotations

import logging
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from indexer.audio.decode import (
    SUPPORTED_FORMATS_TEXT,
    AudioInfo,
    AudioSource,
    DecodeLimits,
    int16_roundtrip,
    load_audio,
    open_audio,
    prepare_waveform,
    probe,
)
from indexer.errors import (
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    InvalidSamplesError,
    UnsupportedFormatError,
)
from tests.helpers import tone

SR = 48_000
STREAM = DecodeLimits(in_memory_max_s=0.0, stream_block_s=0.37)  # force the streaming path


def noise(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (0.3 * rng.standard_normal((int(seconds * sr), channels))).clip(-1, 1)
    return x.astype(np.float32) if channels > 1 else x[:, 0].astype(np.float32)


def pure(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A clean 440 Hz sine (float64, no noise), one column per channel when several."""
    return tone(seconds, sr, amplitude=0.5, noise=0, channels=channels if channels > 1 else None, dtype=np.float64)


def write(path: Path, data: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, data, sr, **kw)
    return path


def expected_len(frames: int, sr: int, target: int = SR) -> int:
    """librosa's length rule, float quirk included: ceil(frames * (target / sr)).

    The float ratio can land a hair above an integer, e.g. 60 s at 44.1 kHz -> 2 880 001
    samples (one zero of padding); we reproduce that to stay bit-identical.
    """
    return frames if sr == target else math.ceil(frames * (target / sr))


def assert_names_file(exc: AudioError, path: Path) -> None:
    assert exc.path == str(path)
    assert str(path) in str(exc) and exc.reason


# --------------------------------------------------------------------------- librosa parity


@pytest.mark.parametrize(
    "sr, channels, subtype",
    [(44_100, 2, "PCM_16"), (48_000, 1, "PCM_16"), (192_000, 8, "PCM_24"), (8_000, 1, "FLOAT")],
)
def test_bit_identical_to_librosa_load(tmp_path, sr, channels, subtype):
    librosa = pytest.importorskip("librosa")
    path = write(tmp_path / "x.wav", noise(1.3, sr, channels), sr, subtype=subtype)
    ref, _ = librosa.load(path, sr=SR, mono=True)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == expected_len(int(1.3 * sr), sr)
    np.testing.assert_array_equal(y, ref)
    # the block-streaming path gives the very same samples, for load and for open
    np.testing.assert_array_equal(load_audio(path, SR, limits=STREAM), ref)
    with open_audio(path, SR, limits=STREAM) as src:
        assert not src.in_memory and src.num_samples == len(ref)
        np.testing.assert_array_equal(src.read(0, len(ref)), ref)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "AIFF"])
def test_pcm16_fast_path_equals_libsndfile_float_read(tmp_path, fmt):
    """16-bit files are read as int16 and scaled in numpy: the very floats libsndfile gives."""
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, size=(48_000, 2), dtype=np.int16)
    pcm[:3, 0] = [-32768, 32767, -1]  # both full-scale ends
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, pcm, 48_000, format=fmt, subtype="PCM_16")
    ref = sf.read(path, dtype="float32", always_2d=True)[0]
    np.testing.assert_array_equal(load_audio(path, SR), np.mean(ref.T, axis=0))


def test_resample_stream_equals_one_shot_soxr():
    """The fact the streaming decoder relies on (python-soxr 1.x, libsoxr HQ)."""
    x = noise(3.1, 44_100)
    ref = soxr.resample(x, 44_100, SR, quality="soxr_hq")
    rs = soxr.ResampleStream(44_100, SR, 1, dtype="float32", quality="HQ")
    parts = [rs.resample_chunk(x[i : i + 12_345]) for i in range(0, len(x), 12_345)]
    parts.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    np.testing.assert_array_equal(np.concatenate(parts), ref)


# --------------------------------------------------------------------------- formats


FORMATS = [  # (name, suffix, sr, sf.write kwargs, lossless)
    ("wav16", ".wav", 44_100, {"subtype": "PCM_16"}, True),
    ("wav24", ".wav", 44_100, {"subtype": "PCM_24"}, True),
    ("wav32", ".wav", 44_100, {"subtype": "PCM_32"}, True),
    ("wavfloat", ".wav", 44_100, {"subtype": "FLOAT"}, True),
    ("flac", ".flac", 44_100, {"format": "FLAC", "subtype": "PCM_16"}, True),
    ("aiff", ".aiff", 44_100, {"format": "AIFF", "subtype": "PCM_16"}, True),
    ("vorbis", ".ogg", 44_100, {"format": "OGG", "subtype": "VORBIS"}, False),
    ("opus", ".opus", 48_000, {"format": "OGG", "subtype": "OPUS"}, False),
    ("mp3", ".mp3", 44_100, {"format": "MP3", "subtype": "MPEG_LAYER_III"}, False),
]


@pytest.mark.parametrize("name, suffix, sr, kw, lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_every_supported_format(tmp_path, name, suffix, sr, kw, lossless):
    fmt = kw.get("format", "WAV")
    if fmt not in sf.available_formats() or kw["subtype"] not in sf.available_subtypes(fmt):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}/{kw['subtype']}")
    x = pure(1.0, sr, channels=2)
    path = write(tmp_path / f"x{suffix}", x, sr, **kw)
    info = probe(path)
    assert (info.format, info.subtype, info.channels) == (fmt, kw["subtype"], 2)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == expected_len(info.frames, info.sample_rate)
    if lossless:
        assert abs(len(y) - SR) <= 1
        ref = soxr.resample(x[:, 0].astype(np.float32), sr, SR, quality="HQ")
        np.testing.assert_allclose(y[: len(ref)], ref[: len(y)], atol=1e-4)
    else:  # lossy codecs: right length, audible, right loudness
        assert abs(len(y) - SR) < 0.1 * SR
        rms = float(np.sqrt(np.mean(y[SR // 10 : -SR // 10] ** 2)))
        assert rms == pytest.approx(0.5 / math.sqrt(2), rel=0.15)


def test_high_rate_many_channels_and_low_rate(tmp_path):
    hi = write(tmp_path / "hi.wav", noise(0.5, 192_000, channels=8), 192_000)
    info = probe(hi)
    assert (info.sample_rate, info.channels, info.frames) == (192_000, 8, 96_000)
    y_hi = load_audio(hi, SR)
    assert len(y_hi) == 24_000
    # 0.5 s is within in_memory_max_s, but 8 channels at 192 kHz outweigh 0.5 s of 48 kHz stereo
    with open_audio(hi, SR, limits=DecodeLimits(in_memory_max_s=0.5)) as src:
        assert not src.in_memory
        np.testing.assert_array_equal(src.read(0, len(src)), y_hi)
    lo = write(tmp_path / "lo.wav", pure(0.5, 8_000), 8_000)
    y = load_audio(lo, SR)
    assert len(y) == 24_000 and np.abs(y).max() > 0.4


def test_content_wins_over_a_wrong_extension(tmp_path):
    path = write(tmp_path / "really_a_wav.m4a", pure(0.2, SR), SR, format="WAV")
    assert len(load_audio(path, SR)) == int(0.2 * SR)


def test_probe_reads_only_the_header(tmp_path):
    path = write(tmp_path / "p.flac", noise(2.0, 44_100, channels=2), 44_100)
    info = probe(path)
    assert info == AudioInfo(str(path), "FLAC", "PCM_16", 44_100, 2, 88_200, 2.0)


# --------------------------------------------------------------------------- errors


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(missing, SR)
    assert_names_file(ei.value, missing)
    assert "not found" in ei.value.reason
    with pytest.raises(AudioDecodeError, match="directory"):
        probe(tmp_path)


@pytest.mark.parametrize(
    "suffix, content",
    [
        (".wav", "random"),
        (".mp3", "random"),
        (".mp3", "text"),
        (".flac", "text"),
        (".ogg", "random"),
    ],
)
def test_garbage_with_an_audio_extension_is_a_decode_error(tmp_path, suffix, content):
    data = np.random.default_rng(1).bytes(20_000) if content == "random" else b"hello\n" * 3000
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(data)
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(path, SR)
    assert_names_file(ei.value, path)
    assert "does not exist" not in str(ei.value)  # libsndfile's misleading mp3 message is hidden


def test_wav_cut_inside_header_raises(tmp_path):
    full = write(tmp_path / "full.wav", noise(1.0, SR), SR).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full[:30])
    with pytest.raises(AudioDecodeError) as ei:
        load_audio(cut, SR)
    assert_names_file(ei.value, cut)


def test_truncated_wav_returns_the_decodable_prefix(tmp_path, caplog):
    x = noise(1.0, 44_100, channels=2)
    full_path = write(tmp_path / "full.wav", x, 44_100)
    raw = full_path.read_bytes()
    cut = tmp_path / "half.wav"
    cut.write_bytes(raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger="indexer.audio.decode"):
        y = load_audio(cut, 44_100)
    assert "truncated" in caplog.text and str(cut) in caplog.text
    full = load_audio(full_path, 44_100)
    assert abs(len(y) - len(full) // 2) < 100
    np.testing.assert_array_equal(y, full[: len(y)])


def test_flac_cut_mid_stream_raises(tmp_path):
    raw = write(tmp_path / "full.flac", noise(2.0, 44_100), 44_100).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(raw[: len(raw) // 2])
    for limits in (DecodeLimits(), STREAM):
        with pytest.raises(AudioDecodeError) as ei:
            load_audio(cut, SR, limits=limits)
        assert_names_file(ei.value, cut)


def test_empty_inputs(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    no_frames = write(tmp_path / "noframes.wav", np.zeros((0, 1), np.float32), SR)
    for path in (zero_bytes, no_frames):
        with pytest.raises(EmptyAudioError) as ei:
            load_audio(path, SR)
        assert_names_file(ei.value, path)
        with pytest.raises(EmptyAudioError):
            open_audio(path, SR)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30, -3e7])
def test_nan_and_inf_samples(tmp_path, bad):
    # 1e30 is finite, but its power overflows float32 in the front end: before issue 16's
    # hostile-audio suite such a file was indexed with a NaN vector
    x = noise(1.0, 44_100, channels=2)
    x[30_000, 1] = bad
    path = write(tmp_path / "nan.wav", x, 44_100, subtype="FLOAT")
    for limits in (DecodeLimits(), STREAM):
        with pytest.raises(InvalidSamplesError) as ei:
            load_audio(path, SR, limits=limits)
        assert_names_file(ei.value, path)
        assert "0.680 s" in ei.value.reason  # 30 000 / 44 100: where to look
    with pytest.raises(InvalidSamplesError):
        open_audio(path, SR, limits=STREAM)
    with pytest.raises(InvalidSamplesError):
        prepare_waveform(x, 44_100, SR)


def test_float_samples_past_full_scale_within_reason_are_kept(tmp_path):
    x = noise(0.5, SR)
    x[100] = 9e5  # far past +-1, yet a usable waveform: not refused
    y = load_audio(write(tmp_path / "loud.wav", x, SR, subtype="FLOAT"), SR)
    assert np.isfinite(y).all() and y.max() > 1e5


def test_absurd_sample_rate_and_channel_count(tmp_path):
    fast = write(tmp_path / "fast.wav", np.zeros(100, np.float32), 800_000)
    wide = write(tmp_path / "wide.wav", np.zeros((10, 65), np.float32), SR)
    for path, word in ((fast, "800000 Hz"), (wide, "65 channels")):
        with pytest.raises(InvalidSamplesError, match=word) as ei:
            load_audio(path, SR)
        assert_names_file(ei.value, path)
    assert len(load_audio(wide, SR, limits=DecodeLimits(max_channels=128))) == 10


def test_too_long_is_refused_from_the_header(tmp_path, monkeypatch):
    path = write(tmp_path / "long.wav", noise(3.0, SR), SR)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before checking the duration")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    limits = DecodeLimits(max_duration_s=2.0)
    for fn in (load_audio, open_audio):
        with pytest.raises(AudioTooLongError) as ei:
            fn(path, SR, limits=limits)
        assert_names_file(ei.value, path)
        assert "3.0 s" in ei.value.reason
    with pytest.raises(AudioTooLongError):
        probe(path, limits=limits)
    assert probe(path).duration_s == 3.0  # probe alone does not judge


@pytest.mark.parametrize(
    "name, data",
    [
        ("song.ape", b"MAC \x96\x0f" + bytes(4000)),
        ("song.amr", b"#!AMR\n" + bytes(4000)),
        ("song.wv", b"wvpk" + bytes(4000)),
        ("notes.txt", b"just some text\n" * 100),
    ],
)
def test_unsupported_containers_list_the_supported_formats(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormatError) as ei:
        load_audio(path, SR)
    assert_names_file(ei.value, path)
    assert SUPPORTED_FORMATS_TEXT in ei.value.reason
    for fmt in ("WAV", "FLAC", "OGG/Vorbis", "Opus", "MP3", "AIFF", "M4A", "AAC", "ALAC", "WMA", "WebM"):
        assert fmt in SUPPORTED_FORMATS_TEXT


@pytest.mark.parametrize(
    "name, data",
    [  # the first bytes (or the extension) name a container PyAV reads; the rest is garbage
        ("song.m4a", b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(4000)),
        ("song.wma", bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(4000)),
        ("song.aac", bytes([0xFF, 0xF1, 0x50, 0x80]) + bytes(4000)),
        ("clip.webm", bytes.fromhex("1a45dfa3") + bytes(4000)),
        ("no_extension", bytes.fromhex("1a45dfa3") + bytes(4000)),
        ("movie.mov", b"just some text\n" * 100),
    ],
)
def test_damaged_pyav_containers_are_decode_errors(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    for fn in (load_audio, open_audio):
        with pytest.raises((AudioDecodeError, EmptyAudioError)) as ei:
            fn(path, SR)
        assert_names_file(ei.value, path)


# --------------------------------------------------------------------------- in-memory arrays


def test_prepare_waveform_matches_the_file_path(tmp_path):
    x = noise(1.1, 44_100, channels=2)
    path = write(tmp_path / "x.wav", x, 44_100, subtype="FLOAT")
    np.testing.assert_array_equal(prepare_waveform(x, 44_100, SR), load_audio(path, SR))
    pcm = (x * 32767).astype(np.int16)
    path16 = write(tmp_path / "x16.wav", pcm, 44_100, subtype="PCM_16")
    np.testing.assert_array_equal(prepare_waveform(pcm, 44_100, SR), load_audio(path16, SR))


def test_prepare_waveform_never_aliases_its_input():
    x = noise(0.5, SR)
    y = prepare_waveform(x, SR, SR)
    np.testing.assert_array_equal(y, x)
    y[:] = 0
    assert np.abs(x).max() > 0


def test_prepare_waveform_errors_use_the_given_name():
    x = noise(0.5, SR, channels=2)
    with pytest.raises(InvalidSamplesError, match="channels, n") as ei:
        prepare_waveform(x.T, SR, SR, name="upload.wav")
    assert ei.value.path == "upload.wav" and "upload.wav" in str(ei.value)
    x[10, 0] = np.nan
    with pytest.raises(InvalidSamplesError, match="NaN"):
        prepare_waveform(x, SR, SR, name="upload.wav")
    with pytest.raises(EmptyAudioError):
        prepare_waveform(np.zeros(0, np.float32), SR, SR)
    with pytest.raises(InvalidSamplesError):
        prepare_waveform(np.zeros((2, 2, 2), np.float32), SR, SR)
    with pytest.raises(InvalidSamplesError, match="sample rate"):
        prepare_waveform(np.zeros(10, np.float32), 10**7, SR)
    with pytest.raises(AudioTooLongError):
        prepare_waveform(np.zeros(SR * 3, np.float32), SR, SR, limits=DecodeLimits(max_duration_s=2))
    with pytest.raises(InvalidSamplesError, match="sample type"):
        prepare_waveform(np.zeros(10, np.complex64), SR, SR)


# --------------------------------------------------------------------------- AudioSource


def test_audio_source_read_clamps_and_closes(tmp_path):
    path = write(tmp_path / "x.wav", noise(2.0, 44_100, channels=2), 44_100)
    whole = load_audio(path, SR)
    n = len(whole)
    for limits in (DecodeLimits(), STREAM):
        src = open_audio(path, SR, limits=limits, tmp_dir=tmp_path)
        with src:
            assert src.in_memory == (limits is not STREAM)
            assert (src.num_samples, src.sample_rate, len(src)) == (n, SR, n)
            np.testing.assert_array_equal(src.read(1000, 5000), whole[1000:5000])
            np.testing.assert_array_equal(src.read(-50, 10), whole[:10])
            np.testing.assert_array_equal(src.read(n - 3, n + 100), whole[-3:])
            assert src.read(n + 5, n + 10).shape == (0,) and src.read(7, 7).shape == (0,)
            assert src.read(0, 4).dtype == np.float32
            for a, b in ((1000, 5000), (-50, 10), (n - 3, n + 100), (n + 5, n + 10), (7, 7)):
                np.testing.assert_array_equal(src.view(a, b), src.read(a, b))
            part = src.view(10, 20)
            assert part.flags.writeable != src.in_memory  # in RAM a view of the waveform: read-only
            assert np.shares_memory(part, src.view(0, n)) == src.in_memory
        assert src.closed
        with pytest.raises(ValueError):
            src.read(0, 10)
        with pytest.raises(ValueError):
            src.view(0, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temp file left behind


def test_from_array():
    src = AudioSource.from_array(np.arange(5, dtype=np.float32), SR)
    assert src.in_memory and src.read(3, 99).tolist() == [3.0, 4.0]


def test_streaming_keeps_memory_bounded(tmp_path):
    sr, seconds = 44_100, 60
    x = noise(seconds, sr, channels=2, seed=3)
    path = write(tmp_path / "long.wav", x, sr)
    del x

    def traced_peak(fn):
        tracemalloc.start()
        try:
            result = fn()
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    limits = DecodeLimits(in_memory_max_s=1.0)  # a 60 s file is "long" here; 10 s blocks
    src, peak_stream = traced_peak(lambda: open_audio(path, SR, limits=limits))
    whole, peak_whole = traced_peak(lambda: load_audio(path, SR))
    with src:
        assert not src.in_memory and src.num_samples == len(whole) == expected_len(seconds * sr, sr)
        streamed = np.concatenate([src.read(i, i + 10 * SR) for i in range(0, len(src), 10 * SR)])
    assert float(np.abs(streamed - whole).max()) < 1e-4
    # raw 10 s block (3.5 MB) + its mono mix; the whole-file path holds the 21 MB decode
    assert peak_stream < 10_000_000, peak_stream
    assert peak_stream * 4 < peak_whole, (peak_stream, peak_whole)


# --------------------------------------------------------------------------- int16 round trip


def test_int16_roundtrip_matches_laion_clap_expression():
    x = np.array([0.0, 0.5, -0.5, 0.99999, -1.0, 1.5, -2e-5, 3.3e-5, 1e-4, -0.7071], dtype=np.float32)
    ref = ((np.clip(x, -1, 1) * 32767).astype(np.int16) / 32767).astype(np.float32)
    y = int16_roundtrip(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref)
    assert y[6] == 0.0 and y[5] == 1.0 and y[4] == -1.0  # truncation toward zero, clipping
    rnd = noise(0.1, SR, seed=9) * 3
    r = ((np.clip(rnd, -1, 1) * 32767).astype(np.int16) / 32767).astype(np.float32)
    np.testing.assert_array_equal(int16_roundtrip(rnd), r)
