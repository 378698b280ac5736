"""Every format the README lists decodes, through whichever decoder reads it, to the PCM it was
made from: bit-identical to the soundfile path for lossless codecs (same int16 PCM, same vector),
close for lossy ones. Damaged files of each container are typed per-file errors, limits are
checked from the container headers before decoding (and while decoding, for headers that only
estimate), an hour of AAC streams in bounded memory, FFmpeg prints nothing, and ``indexer
ingest`` takes a folder mixing them all.

Files are written by PyAV itself (tests/formats.py), a few seconds of audio each."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.audio.decode import SUPPORTED_FORMATS_TEXT, DecodeLimits, load_audio, open_audio, prepare_waveform, probe
from indexer.audio.pyav import PyAVReader
from indexer.errors import AudioDecodeError, AudioError, AudioTooLongError, EmptyAudioError
from tests.formats import BY_NAME, FORMATS, Format, encode
from tests.helpers import run_captured, stored_vectors, tone
from tests.indexer.test_decode import FORMATS as SOUNDFILE_FORMATS

pytest.importorskip("av")

SR = 48_000
REPO = Path(__file__).resolve().parents[2]


def source(fmt: Format, seconds: float = 2.0) -> tuple[np.ndarray, int]:
    """A stereo clip whose channels differ (440 Hz left, 660 Hz right), at a rate the codec takes."""
    sr = 48_000 if "opus" in fmt.codec else 44_100
    x = tone(seconds, sr, channels=2, freq=440.0)
    x[:, 1] = tone(seconds, sr, freq=660.0, seed=1)
    return x, sr


def as_int16(x: np.ndarray) -> np.ndarray:
    """What FFmpeg's converter hands a 16-bit encoder (round to nearest, no dither)."""
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def aligned_error(y: np.ndarray, ref: np.ndarray, max_lag: int = 3000) -> tuple[int, float, float]:
    """(lag, correlation, relative RMS error) of ``y`` against ``ref`` at the best lag (encoder delay)."""
    probe_len = 20_000
    lag = max(range(max_lag), key=lambda k: float(np.dot(y[k : k + probe_len], ref[:probe_len])))
    n = min(len(y) - lag, len(ref))
    a, b = y[lag : lag + n], ref[:n]
    return lag, float(np.corrcoef(a, b)[0, 1]), float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {f.name: encode(root / f"{f.name}{f.suffix}", source(f)[0], source(f)[1], f) for f in FORMATS}


# Lossy bounds measured on this clip (FFmpeg 8.1 encoders at their defaults): AAC corr 0.996, WMA
# 0.98, Opus 0.996, IMA ADPCM 0.9998, A-law 0.9999; FFmpeg's own Vorbis encoder is the weakest (0.935).
MIN_CORRELATION = {"aac": 0.99, "wmav2": 0.97, "libopus": 0.99, "vorbis": 0.9, "adpcm_ima_qt": 0.999, "pcm_alaw": 0.999}


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_listed_format_decodes_to_its_source(files, fmt):
    path = files[fmt.name]
    x, sr = source(fmt)
    info = probe(path)
    assert info.sample_rate == sr and info.channels == 2 and abs(info.duration_s - 2.0) < 0.05, info
    y = load_audio(path, SR)
    if fmt.lossless and fmt.codec != "pcm_f32be":
        # same int16 (or 24-bit) PCM as a WAV would hold -> the very samples the soundfile path gives
        pcm = as_int16(x) if "24" not in fmt.codec else x
        expected = prepare_waveform(pcm, sr, SR)
        tolerance = 0 if "24" not in fmt.codec else 1e-6
        assert len(y) == len(expected)
        assert float(np.abs(y - expected).max()) <= tolerance
    elif fmt.lossless:
        np.testing.assert_array_equal(y, prepare_waveform(x, sr, SR))
    else:
        lag, corr, rms = aligned_error(y, prepare_waveform(x, sr, SR))
        assert corr >= MIN_CORRELATION[fmt.codec], (lag, corr, rms)
        assert lag < 1200 and abs(len(y) - 2.0 * SR) < 0.05 * SR, (lag, len(y))


def test_the_readme_lists_exactly_the_tested_formats():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("<!-- formats -->") : readme.index("<!-- /formats -->")]
    listed = set(re.findall(r"`(\.[a-z0-9]+)`", section))
    tested = {f.suffix for f in FORMATS} | {row[1] for row in SOUNDFILE_FORMATS}
    assert listed == tested, (listed - tested, tested - listed)
    for name in ("AAC", "ALAC", "WMA", "Opus", "Vorbis", "FLAC"):
        assert name in SUPPORTED_FORMATS_TEXT and name in section


def test_streaming_equals_whole_file_for_pyav(files):
    path = files["m4a-aac"]
    whole = load_audio(path, SR)
    limits = DecodeLimits(in_memory_max_s=0.5, stream_block_s=0.3)  # 0.3 s blocks across AAC frames
    with open_audio(path, SR, limits=limits) as src:
        assert not src.in_memory and src.num_samples == len(whole)
        streamed = src.read(0, len(src))
        assert src.info is not None and src.info.frames == round(len(whole) * 44_100 / SR)  # what was decoded
    assert float(np.abs(streamed - whole).max()) < 1e-4


def test_a_video_without_an_audio_track_is_a_clear_error(tmp_path):
    path = encode(
        tmp_path / "silent_film.mp4", np.zeros((10, 2), np.float32), 44_100, BY_NAME["mp4-aac-video"], audio=False
    )
    for fn in (probe, lambda p: load_audio(p, SR)):
        with pytest.raises(EmptyAudioError, match=r"has no audio track \(only video tracks\)") as ei:
            fn(path)
        assert ei.value.path == str(path)


@pytest.mark.parametrize(
    "name", ["m4a-aac", "m4a-alac", "aac-adts", "mp4-aac-video", "wma-wmav2", "mka-opus", "webm-vorbis-video"]
)
def test_damaged_files_are_typed_per_file_errors(files, tmp_path, name):
    """Cut at half, cut inside the header, 2 kB of noise in the middle: a typed error naming the
    file, or (where the container allows) the decodable prefix; never another exception."""
    raw = files[name].read_bytes()
    suffix = files[name].suffix
    noisy = bytearray(raw)
    noisy[len(raw) // 2 : len(raw) // 2 + 2000] = np.random.default_rng(0).bytes(2000)
    full = len(load_audio(files[name], SR))
    for label, data in (("half", raw[: len(raw) // 2]), ("header", raw[:300]), ("noise", bytes(noisy))):
        path = tmp_path / f"{label}{suffix}"
        path.write_bytes(data)
        try:
            y = load_audio(path, SR)
        except AudioError as exc:
            assert exc.path == str(path) and exc.code.startswith("audio."), exc
            continue
        assert label != "header", "300 bytes of a container hold no audio"
        assert 0 < len(y) <= full + SR // 10 and np.isfinite(y).all()
    if suffix in (".m4a", ".mp4"):  # FFmpeg writes the index (moov) last: half a file has none
        with pytest.raises(AudioDecodeError, match="not a valid"):
            load_audio(tmp_path / f"half{suffix}", SR)


def test_limits_are_checked_from_the_container_header_before_decoding(files, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before checking the header")

    monkeypatch.setattr(PyAVReader, "_frames", no_decoding)
    for name in ("m4a-aac", "wma-wmav2", "webm-opus", "mkv-vorbis-video"):
        with pytest.raises(AudioTooLongError, match=r"2\.0 s\) long"):
            load_audio(files[name], SR, limits=DecodeLimits(max_duration_s=1.5))
        with pytest.raises(AudioTooLongError, match="would decode"):
            probe(files[name], limits=DecodeLimits(max_samples=100_000))


def test_a_header_that_underestimates_is_caught_while_decoding(tmp_path):
    """ADTS has no length field: FFmpeg estimates it from the bit rate, here 0.5% short. Decoding
    stops (typed error) once the audio passes the limit, instead of trusting the estimate."""
    fmt = Format("adts", ".aac", "adts", "aac", lossless=False, bit_rate=24_000)
    ten = encode(tmp_path / "ten.aac", tone(10.0, 16_000), 16_000, fmt).read_bytes()
    path = tmp_path / "six_minutes.aac"
    path.write_bytes(ten * 36)  # ADTS frames concatenate: 360 s of audio
    header_s = probe(path).duration_s
    assert header_s < 359.0
    limits = DecodeLimits(max_duration_s=359.0)
    with pytest.raises(AudioTooLongError, match="decodes to more than 360.0 s"):
        load_audio(path, 16_000, limits=limits)
    assert len(load_audio(path, 16_000)) > 360 * 16_000


def test_a_length_field_far_below_the_audio_is_refused_in_memory(files, tmp_path, monkeypatch):
    """A header length sizes the in-memory decode; a file that then decodes to far more (a forged
    length field: 1 s said, 35 s held) is refused instead of growing past the plan. ADTS, whose
    length is only an estimate, is always streamed instead."""
    import indexer.audio.pyav as pyav

    long_alac = encode(tmp_path / "long.m4a", tone(35.0, 8_000), 8_000, BY_NAME["m4a-alac"])
    real = pyav._header_facts
    monkeypatch.setattr(pyav, "_header_facts", lambda *a: {**real(*a), "frames": 8_000, "duration_s": 1.0})
    with pytest.raises(AudioDecodeError, match="header says 1.0 s: the length field is wrong"):
        load_audio(long_alac, 16_000)
    with open_audio(files["aac-adts"], SR) as src:
        assert not src.in_memory and abs(src.num_samples - 2.0 * SR) < 0.05 * SR  # streamed, all of it
    assert src.info is not None and src.info.duration_s > 1.9  # what was decoded, not the forged header


HOUR_SCRIPT = """
import json, resource, sys
from indexer.audio.decode import open_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open_audio(sys.argv[1], 16000) as src:
    out = {"samples": src.num_samples, "in_memory": src.in_memory, "tail": float(abs(src.read(src.num_samples - 16000, src.num_samples)).max())}
out["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def test_an_hour_of_aac_streams_in_bounded_memory(tmp_path):
    """3 600 s of AAC (ADTS, 16 kHz mono, 11 MB) decoded in a fresh process: the waveform goes to
    a temporary file block by block; the process's peak memory grows by a few MB, not by the
    230 MB the decoded hour weighs."""
    fmt = Format("adts", ".aac", "adts", "aac", lossless=False, bit_rate=24_000)
    ten = encode(tmp_path / "ten.aac", tone(10.0, 16_000), 16_000, fmt).read_bytes()
    path = tmp_path / "hour.aac"
    path.write_bytes(ten * 360)
    run = run_captured(
        [sys.executable, "-c", HOUR_SCRIPT, str(path)],
        timeout=300,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not out["in_memory"] and out["samples"] >= 3600 * 16_000
    assert out["tail"] > 0.1  # the last second is the tone, not padding
    assert out["rss_growth_mb"] < 60, out


NOISE_SCRIPT = """
import logging, sys
logging.getLogger("indexer").addHandler(logging.NullHandler())  # our own "truncated?" warnings
from indexer.audio.decode import load_audio
from indexer.errors import AudioError
for p in sys.argv[1:]:
    try:
        load_audio(p, 48000)
    except AudioError as exc:
        print(exc.code)
"""


def test_ffmpeg_prints_nothing_on_damaged_files(files, tmp_path):
    paths = []
    for name in ("m4a-aac", "aac-adts", "wma-wmav2", "webm-opus"):
        raw = bytearray(files[name].read_bytes())
        raw[len(raw) // 3 : len(raw) // 3 + 3000] = np.random.default_rng(1).bytes(3000)
        paths.append(tmp_path / f"noisy_{name}{files[name].suffix}")
        paths[-1].write_bytes(bytes(raw))
    run = run_captured(
        [sys.executable, "-c", NOISE_SCRIPT, *map(str, paths)],
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_ingest_takes_a_folder_mixing_every_format(tmp_path, capsys):
    """``indexer ingest`` over WAV, FLAC, M4A (AAC, ALAC), ADTS, WMA, WebM, MKV and MP4 video beside
    a damaged M4A and a video without sound: every audio file is embedded with its format
    recorded, the two bad ones are per-file errors, and an ALAC file's vector is the vector of a
    WAV holding the same 16-bit PCM."""
    import soundfile as sf

    from indexer import cli
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store

    lib = tmp_path / "lib"
    lib.mkdir()
    good = {}
    for i, name in enumerate(
        ["m4a-aac", "m4a-alac", "aac-adts", "wma-wmav2", "webm-opus", "mkv-vorbis-video", "mp4-aac-video"]
    ):
        fmt = BY_NAME[name]
        sr = 48_000 if "opus" in fmt.codec else 44_100
        x = tone(3.0, sr, channels=2, freq=300.0 + 90 * i, seed=i)
        good[name] = encode(lib / f"{name}{fmt.suffix}", x, sr, fmt)
        if name == "m4a-alac":
            sf.write(lib / "alac_twin.wav", as_int16(x), sr, subtype="PCM_16")
            good["wav"] = lib / "alac_twin.wav"
    sf.write(lib / "plain.flac", tone(3.0, 44_100, freq=1000.0), 44_100)
    good["flac"] = lib / "plain.flac"
    damaged = lib / "damaged.m4a"
    damaged.write_bytes(good["m4a-aac"].read_bytes()[:4000])
    encode(lib / "silent.mp4", np.zeros((10, 2), np.float32), 44_100, BY_NAME["mp4-aac-video"], audio=False)
    (lib / "notes.txt").write_text("not picked up: not an audio extension")

    home = tmp_path / "home"
    code = cli.main(["ingest", str(lib), "--home", str(home), "-q", "--workers", "2"])
    out = capsys.readouterr()
    assert code == 1 and f"{len(good)} embedded" in out.out and "2 failed" in out.out, out
    assert cli.main(["status", "--home", str(home), "--errors", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    codes = {Path(e["path"]).name: e["code"] for e in status["errors"]}
    assert codes == {"damaged.m4a": "audio.decode", "silent.mp4": "audio.empty"}

    store = Store.open(IndexerSettings(home=home))
    vectors = stored_vectors(store)
    assert set(vectors) == {str(p) for p in good.values()}
    np.testing.assert_allclose(vectors[str(good["m4a-alac"])], vectors[str(good["wav"])], atol=1e-6)
    assert cli.main(["search", "a steady tone", "--home", str(home), "--format", "M4A", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["items"]
    assert {Path(h["path"]).name for h in hits} == {"m4a-aac.m4a", "m4a-alac.m4a"}


def test_without_pyav_these_formats_say_what_to_install(files, monkeypatch):
    """av is a core dependency; an environment that lacks it (a platform without its wheel) gets a
    per-file error naming the package, and the soundfile formats keep working."""
    from indexer.errors import UnsupportedFormatError

    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(UnsupportedFormatError, match=r"M4A files need the PyAV decoder.*pip install av"):
        load_audio(files["m4a-aac"], SR)
    assert abs(len(load_audio(files["aiff-s24"], SR)) - 2 * SR) <= 1  # 44.1 kHz -> 48 kHz: librosa's ceil
