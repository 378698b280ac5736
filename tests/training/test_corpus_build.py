"""End-to-end corpus build on fake, already-extracted packages (no apt, no fluidsynth, offline):
filtering, captions, AudioSet labels, dedupe, windowing, package splits, licences, idempotency,
and that the manifest reads cleanly with our JSONL reader."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus.build import BuildConfig, build
from training.corpus.cli import main as cli_main
from training.corpus.rcc import build_rcc
from training.corpus.sources import COMBAT_WORDS, Source
from training.data.readers import read_jsonl

SR = 22050


def _sound(freq: float, seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    env = np.minimum(1.0, 20 * t) * np.exp(-t / max(seconds, 0.5))
    return (0.4 * np.sin(2 * np.pi * freq * t) * env + 0.02 * rng.standard_normal(t.size)).astype("float32")


def _wav(path: Path, x: np.ndarray, sr: int = SR, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, format=fmt)
    return path


def _wav_bytes(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV")
    return buf.getvalue()


def _extra_sfx(extra: Path) -> Path:
    """An extra-sfx style folder: two recordings and their manifest.csv."""
    _wav(extra / "a__b/dog_bark.wav", _sound(600, 1.0, seed=10))
    _wav(extra / "c__d/bell.wav", _sound(1800, 2.0, seed=11))
    with open(extra / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["path", "caption", "label_words", "source_repo", "source_path", "licence", "attribution", "duration_s"]
        )
        w.writerow(
            ["a__b/dog_bark.wav", "a dog barks once", "dog, bark", "a/b", "snd/dog.ogg", "CC0", "Jane Recordist", "1.0"]
        )
        w.writerow(
            ["c__d/bell.wav", "a church bell rings", "bell", "c/d", "snd/bell.ogg", "CC BY 3.0", "Bell Ringer", "2.0"]
        )
    return extra


def _make_world(tmp: Path) -> tuple[BuildConfig, dict[str, Path]]:
    game = tmp / "pkgs" / "fake-game"
    snd = game / "usr/share/games/fake/sounds"
    cow = _wav(snd / "actor/fauna/animal/cattle/cow_moo_02.wav", _sound(300, 1.5))
    (snd / "actor/fauna/animal/cattle/cow_moo_03.wav").write_bytes(cow.read_bytes())  # exact dup
    _wav(snd / "actor/fauna/animal/cattle/cow_moo_04.wav", 0.5 * _sound(300, 1.5, seed=3))  # near dup
    _wav(snd / "footsteps/gravel_3.ogg", _sound(900, 0.8, seed=1), fmt="OGG")
    _wav(snd / "music/peaceful_theme.wav", _sound(500, 2.0))
    _wav(snd / "voice/greeting.wav", _sound(700, 1.0))
    _wav(snd / "attack/sword_hit.wav", _sound(2000, 1.0))
    _wav(snd / "ui/click_short.wav", _sound(1000, 0.1))
    _wav(snd / "ambient/silence.wav", np.zeros(SR, dtype="float32"))
    (snd / "broken_door.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    _wav(snd / "ambient/weather/rain_loop.wav", _sound(150, 35.0, seed=2) + 0.05)
    game_src = Source(
        "fake-game",
        "CC-BY-SA-3.0",
        include=(r"sounds/",),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset({"fake", "actor", "fauna", "ui"}),
    )

    zipped = tmp / "pkgs" / "fake-zip"
    z = zipped / "usr/share/games/zipgame/public.zip"
    z.parent.mkdir(parents=True)
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("audio/ambient/thunder_1.wav", _wav_bytes(_sound(80, 2.0, seed=5)))
        zf.writestr("audio/voice/hello.wav", _wav_bytes(_sound(600, 1.0, seed=6)))
        zf.writestr("art/texture.png", b"\x89PNG")
    zip_src = Source("fake-zip", "CC0", nested=(("**/public.zip", "zip"),), include=(r"audio/",))

    rcc = tmp / "pkgs" / "fake-rcc"
    (rcc / "rcc").mkdir(parents=True)
    (rcc / "rcc" / "farm.rcc").write_bytes(
        build_rcc(
            {
                "gcompris/src/activities/farm/resource/horse.wav": _wav_bytes(_sound(400, 1.2, seed=7)),
                "gcompris/src/activities/farm/resource/voices/en/horse.wav": _wav_bytes(_sound(450, 1.0)),
            }
        )
    )
    rcc_src = Source(
        "fake-rcc",
        "GPL-3+",
        nested=(("**/*.rcc", "rcc"),),
        include=(r"resource/",),
        noise_words=frozenset({"gcompris", "src", "activities", "resource", "farm"}),
    )

    stamps = tmp / "pkgs" / "fake-stamps"
    birds = stamps / "usr/share/tuxpaint/stamps/animals/birds"
    _wav(birds / "rooster.wav", _sound(1200, 1.0, seed=8))
    _wav(birds / "rooster_desc_fr.wav", _sound(250, 1.0, seed=9))
    (birds / "rooster.txt").write_text("A colorful rooster.\nfr.utf8=Un coq.\n")
    stamp_src = Source(
        "fake-stamps",
        "GPL-2+",
        text_captions=True,
        include=(r"stamps/",),
        exclude=(r"_desc",),
        noise_words=frozenset({"stamps", "tuxpaint", "animals"}),
    )

    extra = _extra_sfx(tmp / "extra")

    cfg = BuildConfig(
        out=tmp / "corpus",
        cache=tmp / "cache",
        extra=extra,
        heldout=("fake-zip", "extra-sfx:c/d"),
        val=("fake-rcc",),
        fluidsynth=False,
        workers=1,
        progress=False,
        roots={"fake-game": game, "fake-zip": zipped, "fake-rcc": rcc, "fake-stamps": stamps},
        sources=(game_src, zip_src, rcc_src, stamp_src),
    )
    return cfg, {"cow": cow}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    cfg, files = _make_world(tmp)
    report = build(cfg)
    rows = [json.loads(line) for line in (cfg.out / "manifest.jsonl").read_text().splitlines()]
    return cfg, report, rows


def _by_source(rows, needle):
    return [r for r in rows if needle in r["meta"]["source_path"]]


def test_manifest_reads_without_issues(built):
    cfg, _, rows = built
    records, issues = read_jsonl(cfg.out / "manifest.jsonl", probe_audio=True)
    assert issues == []
    assert len(records) == len(rows)
    assert all(r.captions and r.split in ("train", "val", "heldout") and r.licence for r in records)


def test_specific_captions_and_labels(built):
    _, _, rows = built
    (cow,) = _by_source(rows, "cow_moo")
    assert cow["captions"][0] == "A cow mooing"
    assert len(cow["captions"]) >= 2
    assert "Cattle, bovinae" in cow["labels"] and cow["meta"]["primary_label"] == "Moo"
    assert "cow" in cow["tags"] and "wav" not in cow["tags"]
    (steps,) = _by_source(rows, "gravel_3")
    assert steps["captions"][0] == "Footsteps on gravel"
    assert steps["meta"]["primary_label"] == "Walk, footsteps"
    (horse,) = _by_source(rows, "horse.wav")
    assert horse["captions"][0] == "A horse neighing" and horse["split"] == "val"
    (thunder,) = _by_source(rows, "thunder_1")
    assert thunder["labels"][0] == "Thunder" and thunder["split"] == "heldout"
    (rooster,) = _by_source(rows, "rooster")
    assert rooster["captions"][0] == "A rooster crowing"
    assert rooster["meta"]["source_text"] == "A colorful rooster."
    (dog,) = _by_source(rows, "dog.ogg")
    assert dog["captions"][0] == "A dog barks once"
    assert dog["meta"]["attribution"] == "Jane Recordist" and dog["licence"] == "CC0"


def test_filtering_is_reported(built):
    _, report, rows = built
    paths = " ".join(r["meta"]["source_path"] for r in rows)
    for (
        gone
    ) in "peaceful_theme greeting sword_hit click_short silence broken_door hello rooster_desc voices/en".split():
        assert gone not in paths
    f = report["packages"]["fake-game"]["filtered"]
    assert f["music/speech (music)"] == 1 and f["music/speech (voice)"] == 1
    assert f["skipped word (attack)"] == 1 and f["silent"] == 1
    assert f["shorter than 0.3 s"] == 1
    assert any(k.startswith("undecodable") for k in f)


def test_duplicates_dropped_and_recorded(built):
    _, report, rows = built
    assert len(_by_source(rows, "cow_moo")) == 1
    hows = sorted(d["how"] for d in report["duplicates"])
    assert hows == ["exact", "near"]
    assert report["packages"]["fake-game"]["duplicates"] == 2


def test_long_files_are_windowed(built):
    cfg, report, rows = built
    wins = _by_source(rows, "rain_loop")
    assert [w["meta"]["window"]["index"] for w in wins] == [0, 1, 2]
    assert len({tuple(w["captions"]) for w in wins}) == 1
    info = sf.info(str(cfg.out / wins[1]["audio"]))
    assert info.channels == 1 and info.samplerate == SR and info.format == "FLAC"
    assert abs(info.duration - 10.0) < 0.01 and wins[1]["meta"]["duration_s"] == 10.0
    assert report["packages"]["fake-game"]["windowed_files"] == 1


def test_splits_by_package_and_licences(built):
    cfg, report, rows = built
    for r in rows:
        pkg = r["meta"]["package"]
        want = {"fake-zip": "heldout", "extra-sfx:c/d": "heldout", "fake-rcc": "val"}.get(pkg, "train")
        assert r["split"] == want
    assert {r["licence"] for r in rows if r["meta"]["package"] == "fake-game"} == {"CC-BY-SA-3.0"}
    assert set(report["splits"]) == {"train", "val", "heldout"}
    assert report["total"]["clips"] == len(rows)
    assert report["labels"]["Moo"]["clips"] == 1
    lic = (cfg.out / "LICENCES.md").read_text()
    assert "fake-game" in lic and "Bell Ringer (CC BY 3.0)" in lic


def test_rebuild_is_idempotent(built):
    cfg, _, rows = built
    target = cfg.out / rows[0]["audio"]
    before = target.stat().st_mtime_ns
    build(cfg)
    again = [json.loads(line) for line in (cfg.out / "manifest.jsonl").read_text().splitlines()]
    assert again == rows
    assert target.stat().st_mtime_ns == before


def test_cli_runs_offline(tmp_path, capsys):
    game = tmp_path / "pkg"
    _wav(game / "usr/share/buckle/wav/1a-0.wav", _sound(3000, 0.5))
    rc = cli_main(
        ["--out", str(tmp_path / "c"), "--packages", "bucklespring-data", "--root", f"bucklespring-data={game}"]
        + ["--no-fluidsynth", "--workers", "1", "--no-progress", "--cache", str(tmp_path / "cache")]
    )
    assert rc == 0
    row = json.loads((tmp_path / "c" / "manifest.jsonl").read_text().splitlines()[0])
    assert row["captions"][0] == "A key press on a mechanical keyboard"
    assert row["labels"][0] in ("Computer keyboard", "Typing")
    assert cli_main(["--out", str(tmp_path / "d"), "--heldout", "x", "--val", "x"]) == 2
