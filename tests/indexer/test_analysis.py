"""Tempo, key and loudness (``indexer analyze``, ``ingest --analyze``, the bpm/key filters),
checked on generated material whose answers are known: click tracks, chord progressions in set
keys, sines and pink noise at set levels (BS.1770 calibration), silence and noise that must get
no tempo and no key rather than a guess."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import freqz

from indexer import cli
from indexer.analysis.loudness import integrated_loudness
from indexer.analysis.musical import estimate_key, estimate_tempo
from indexer.analysis.run import analyse_file
from indexer.errors import FilterValueError, InvalidSamplesError
from indexer.filters import SearchFilters
from tests.dup_library import DEMO
from tests.music_library import chord_progression, click_track, musical_library, pink_noise, write_wav
from tests.service.conftest import MODEL

pytest.importorskip("librosa")
SR = 22_050


# ----------------------------------------------------------------------------- loudness


def test_a_full_scale_997_hz_sine_reads_minus_3_01_lufs():
    t = np.arange(48_000 * 5) / 48_000
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), 48_000) == pytest.approx(-3.01, abs=0.02)


@pytest.mark.parametrize("sr", [48_000, 44_100, 32_000])
def test_ebu_3341_case_1_stereo_sine_at_minus_23_dbfs_reads_minus_23_lufs(sr):
    t = np.arange(sr * 20) / sr
    sine = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    assert integrated_loudness(np.stack([sine, sine], axis=1), sr) == pytest.approx(-23.0, abs=0.1)


def _reference_lufs(y: np.ndarray, sr: int) -> float:
    """By hand, in the frequency domain: BS.1770's published 48 kHz K-filter coefficients
    (not the meter's own design), Parseval for the mean square; no gating (stationary noise)."""
    shelf = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
    high_pass = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])
    spectrum = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / sr)
    w = 2 * np.pi * f / 48_000
    gain = np.abs(freqz(*shelf, worN=w)[1] * freqz(*high_pass, worN=w)[1]) ** 2
    power = np.abs(spectrum) ** 2 * gain
    power[1:-1] *= 2  # rfft keeps one side of the spectrum
    return -0.691 + 10 * np.log10(power.sum() / len(y) ** 2)


@pytest.mark.parametrize("level", [-20.0, -30.0])
def test_pink_noise_reads_within_half_a_lu_of_the_hand_computed_reference(level):
    y = pink_noise(10.0, 44_100, level).astype(np.float64)
    measured = integrated_loudness(y, 44_100)
    assert measured == pytest.approx(_reference_lufs(y, 44_100), abs=0.5)
    assert measured == pytest.approx(integrated_loudness(y * 10 ** (-6 / 20), 44_100) + 6, abs=0.01)  # linear


def test_gating_ignores_silence_and_silence_or_a_blip_has_no_loudness():
    sr = 48_000
    tone = 10 ** (-20 / 20) * np.sin(2 * np.pi * 1000 * np.arange(sr * 3) / sr)
    padded = np.concatenate([tone, np.zeros(sr * 30)])
    # the 27 blocks inside the tone, plus the 3 that straddle its end (3/4, 1/2, 1/4 of it): the
    # 30 s of silence are gated out (ungated they would pull it 10 dB down)
    expected = integrated_loudness(tone, sr) + 10 * np.log10((27 + 0.75 + 0.5 + 0.25) / 30)
    assert integrated_loudness(padded, sr) == pytest.approx(expected, abs=0.01)
    assert integrated_loudness(np.zeros(sr * 5), sr) is None
    assert integrated_loudness(tone[: int(0.3 * sr)], sr) is None  # shorter than one 400 ms block


# ----------------------------------------------------------------------------- tempo and key


@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_click_tracks_get_their_tempo_within_2_percent(bpm):
    tempo = estimate_tempo(click_track(bpm, 20, SR), SR)
    assert tempo.bpm == pytest.approx(bpm, rel=0.02)
    assert tempo.confidence is not None and tempo.confidence > 0.5


@pytest.mark.parametrize("key", ["C major", "A minor", "F# major", "D# minor"])
def test_chord_progressions_get_their_key(key):
    found = estimate_key(chord_progression(key, SR), SR)
    assert found.name == key and found.confidence > 0.8


def test_noise_silence_and_a_lone_sine_get_no_tempo_and_no_key():
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR * 10)).astype(np.float32)
    sine = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR * 10) / SR)).astype(np.float32)
    for y in (noise, np.zeros(SR * 10, np.float32), sine):
        assert estimate_tempo(y, SR).bpm is None
        assert estimate_key(y, SR).name is None
    assert estimate_tempo(np.zeros(0, np.float32), SR).bpm is None
    # a real recording of radio static: its averaged chroma correlates 0.81 with F major, yet it has no key
    static, sr = sf.read(DEMO / "radio_static.ogg", dtype="float32")
    assert estimate_key(static, sr).name is None


def test_a_file_is_analysed_whole_for_loudness_and_hostile_ones_get_nulls_or_an_error(tmp_path):
    stereo = np.stack([click_track(120, 10, 44_100)] * 2, axis=1)
    path = write_wav(tmp_path / "stereo_click.wav", stereo, 44_100, "FLOAT")
    values = analyse_file(str(path))
    assert values.tempo_bpm == pytest.approx(120, rel=0.02)
    # both channels count (BS.1770 sums them): 3 dB above the mono file's loudness
    mono = analyse_file(str(write_wav(tmp_path / "mono_click.wav", stereo[:, 0], 44_100, "FLOAT")))
    assert values.loudness_lufs == pytest.approx(mono.loudness_lufs + 3.01, abs=0.05)
    short = analyse_file(str(write_wav(tmp_path / "short.wav", click_track(120, 0.2), SR)))
    assert (short.tempo_bpm, short.key, short.loudness_lufs, short.error) == (None, None, None, None)
    bad = np.zeros(SR, np.float32)
    bad[100] = np.nan
    nan_path = tmp_path / "nan.wav"
    sf.write(nan_path, bad, SR, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError):
        analyse_file(str(nan_path))


def test_a_file_only_pyav_reads_is_analysed_like_its_wav(tmp_path):
    """m4a (ALAC, lossless) goes through the second decoder; loudness counts both channels there too."""
    pytest.importorskip("av")
    from tests.formats import BY_NAME, encode

    stereo = np.stack([chord_progression("A minor", 44_100)] * 2, axis=1)
    m4a = analyse_file(str(encode(tmp_path / "a_minor.m4a", stereo, 44_100, BY_NAME["m4a-alac"])))
    wav = analyse_file(str(write_wav(tmp_path / "a_minor.wav", stereo, 44_100, "PCM_16")))
    assert m4a.key == wav.key == "A minor" and m4a.tempo_bpm == pytest.approx(wav.tempo_bpm, abs=0.5)
    assert m4a.loudness_lufs == pytest.approx(wav.loudness_lufs, abs=0.05)


# ----------------------------------------------------------------------------- filters


def test_without_librosa_analysis_is_refused_with_the_way_to_get_it(monkeypatch):
    from indexer.analysis.run import analyze_collection
    from indexer.errors import AnalysisUnavailableError

    monkeypatch.setitem(sys.modules, "librosa", None)  # import librosa -> ImportError
    with pytest.raises(AnalysisUnavailableError, match=r"clapsearch\[analysis\]"):
        analyze_collection(None, "default")  # refused before the store is touched
    with pytest.raises(AnalysisUnavailableError):
        estimate_key(chord_progression("C major", SR), SR)


def test_filters_refuse_unknown_keys_and_reversed_bpm_ranges():
    assert SearchFilters(key_name="Bbm").keys == ("A# minor",)
    assert SearchFilters(key_name="gb").keys == ("F# major", "F# minor")
    for bad in (dict(key_name="H minor"), dict(key_name="A dorian"), dict(bpm_min=130, bpm_max=120)):
        with pytest.raises(FilterValueError):
            SearchFilters(**bad)
    with pytest.raises(FilterValueError):
        SearchFilters(bpm_min=float("nan"))


# ----------------------------------------------------------------------------- end to end


def _run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _names(hits: list[dict]) -> list[str]:
    return sorted(hit["name"] for hit in hits)


def test_ingest_analyze_then_search_by_tempo_and_key(tmp_path, capsys):
    files = musical_library(tmp_path / "lib")
    home = ["--home", str(tmp_path / "home"), "--model", str(MODEL)]
    code, out, err = _run(capsys, "ingest", str(tmp_path / "lib"), "--analyze", "--workers", "1", "-q", *home)
    assert code == 0, err
    # the progressions strike a chord a second: 60 BPM, rightly
    assert "6 files analysed (4 with a tempo, 2 with a key)" in out

    def search(*options: str) -> list[dict]:
        code, out, err = _run(capsys, "search", "music", "--json", "-k", "20", *options, *home)
        assert code == 0, err
        return json.loads(out)["items"]

    assert _names(search("--bpm-min", "118", "--bpm-max", "122")) == ["click_120.wav"]
    assert _names(search("--bpm-min", "85", "--bpm-max", "95")) == ["click_90.wav"]
    assert _names(search("--bpm-max", "70")) == ["a_minor.wav", "c_major.wav"]
    assert _names(search("--key", "A minor")) == ["a_minor.wav"]
    assert _names(search("--key", "c")) == ["c_major.wav"]
    hits = {hit["name"]: hit for hit in search()}
    assert hits["click_120.wav"]["analysis"]["tempo_bpm"] == pytest.approx(120, rel=0.02)
    assert hits["a_minor.wav"]["analysis"]["key"] == "A minor"
    silence = hits["silence.wav"]["analysis"]
    assert (silence["tempo_bpm"], silence["key"], silence["loudness_lufs"]) == (None, None, None)
    noise = hits["noise.wav"]["analysis"]
    assert (noise["tempo_bpm"], noise["key"]) == (None, None) and -20 < noise["loudness_lufs"] < -14
    code, out, _ = _run(capsys, "search", "music", "--key", "A minor", *home)
    assert "A minor" in out and "LUFS" in out

    # only what is missing is analysed again: nothing, then the one changed file
    assert "0 files analysed" in _run(capsys, "analyze", *home)[1]
    # a file gone between its ingest and its analysis costs that file, with the reason, and exit 1
    write_wav(tmp_path / "late" / "late.wav", click_track(100, 6))
    assert _run(capsys, "ingest", str(tmp_path / "late"), "--workers", "1", "-q", *home)[0] == 0
    (tmp_path / "late" / "late.wav").unlink()
    code, out, err = _run(capsys, "analyze", *home)
    assert code == 1 and "0 files analysed" in out and "1 could not be" in out
    assert "late.wav: [audio.decode] file not found" in err
    assert "0 files analysed, " not in _run(capsys, "analyze", *home)[1]  # not retried until it changes
    write_wav(files["click_90"], click_track(140, 12))
    code, out, err = _run(capsys, "ingest", str(tmp_path / "lib"), "--analyze", "--workers", "1", "-q", *home)
    assert code == 0 and "1 files analysed (1 with a tempo" in out, out + err
    assert _names(search("--bpm-min", "137", "--bpm-max", "143")) == ["click_90.wav"]
    assert _names(search("--bpm-min", "85", "--bpm-max", "95")) == []

    code, _, err = _run(capsys, "search", "x", "--key", "H minor", *home)
    assert code == 2 and "error [request.filter_value]" in err


@pytest.mark.slow
def test_analysis_in_a_process_pool_gives_the_same_values(tmp_path, capsys):
    """``--workers 2``: spawned analysis processes (each imports librosa: ~30 s here, so slow)."""
    from indexer.settings import IndexerSettings
    from indexer.store.analyses import analyses_of
    from indexer.store.store import Store

    lib = tmp_path / "lib"
    write_wav(lib / "click_120.wav", click_track(120, 8))
    write_wav(lib / "a_minor.wav", chord_progression("A minor"))
    home = tmp_path / "home"
    code, out, err = _run(capsys, "ingest", str(lib), "--home", str(home), "--model", str(MODEL), "-q")
    assert code == 0, err
    code, out, err = _run(capsys, "analyze", "--workers", "2", "--home", str(home), "--model", str(MODEL))
    assert code == 0 and "2 files analysed" in out, out + err
    store = Store.open(IndexerSettings(home=home, model=MODEL, index_dir=None))
    try:
        pooled = analyses_of(store.db, [1, 2])
    finally:
        store.close()
    assert len(pooled) == 2
    for values in pooled.values():
        path = lib / ("click_120.wav" if values["tempo_bpm"] and values["key"] is None else "a_minor.wav")
        direct = analyse_file(str(path))
        assert values == {name: getattr(direct, name) for name in values}
