"""Unit tests of the corpus builder's parts: rcc reader, path filters, captions, AudioSet
mapping, fingerprints / dedupe, windows and the GM MIDI writer. Offline, no apt, no fluidsynth."""

from __future__ import annotations

import pytest

from tests.helpers import tone
from training.corpus import audio as A
from training.corpus.captions import describe, event_phrase
from training.corpus.gm import PERCUSSION, PROGRAMS, midi_file, renders
from training.corpus.ontology import load_ontology
from training.corpus.rcc import RccArchive, RccError, build_rcc, extract_rcc
from training.corpus.sources import BY_NAME, SOURCES, Source, path_words, skip_reason


@pytest.fixture(scope="module")
def onto():
    return load_ontology()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_roundtrip(tmp_path, version):
    files = {"a/b/horse.ogg": b"OggS-horse", "a/readme.txt": b"x" * 300, "top.wav": b"RIFF"}
    blob = build_rcc(files, version=version, compress=(".txt",))
    arc = RccArchive(blob)
    got = {e.path: arc.read(e) for e in arc.entries()}
    assert got == files
    (tmp_path / "r.rcc").write_bytes(blob)
    written = extract_rcc(tmp_path / "r.rcc", tmp_path / "out", (".ogg", ".wav"))
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["a/b/horse.ogg", "top.wav"]


def test_rcc_rejects_other_files():
    with pytest.raises(RccError):
        RccArchive(b"PK\x03\x04 not a resource file")


def test_path_words_split_camel_case_and_digits():
    assert path_words("LRRain_in_garden01.ogg") == ["lr", "rain", "in", "garden", "ogg"]


@pytest.mark.parametrize(
    "package, rel, reason",
    [
        ("0ad-data", "x/public.zip/audio/actor/fauna/animal/cattle/cow_moo_02.ogg", None),
        ("0ad-data", "x/public.zip/audio/voice/greek/civ/hello.ogg", "outside sound folders"),
        ("0ad-data", "x/public.zip/audio/actor/human/death/death_1.ogg", "excluded path"),
        ("0ad-data", "x/public.zip/audio/music/peace.ogg", "outside sound folders"),
        ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/animals/birds/rooster_desc_fr.ogg", "excluded path"),
        ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/animals/birds/rooster.ogg", None),
        ("hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/voices/Default/Ooff1.ogg", "excluded path"),
        ("wesnoth-1.16-data", "usr/share/games/wesnoth/1.16/data/core/sounds/ambient/birds1.ogg", None),
        (
            "megaglest-data",
            "usr/share/games/megaglest/techs/megapack/commondata/sounds/archer_attack1.wav",
            "skipped word (attack)",
        ),
        ("megaglest-data", "usr/share/games/megaglest/techs/megapack/commondata/sounds/cow_ack1.wav", None),
        ("supertux-data", "usr/share/games/supertux2/music/forest/forest.ogg", "outside sound folders"),
        ("minetest-data", "usr/share/games/minetest/readme.txt", "not audio"),
    ],
)
def test_skip_reasons(package, rel, reason):
    assert skip_reason(BY_NAME[package], rel) == reason


def test_source_table_is_unique():
    names = [s.package for s in SOURCES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "package, rel, phrase",
    [
        ("0ad-data", "p.zip/audio/actor/fauna/animal/cattle/cow_moo_02.ogg", "a cow mooing"),
        ("0ad-data", "p.zip/audio/actor/singlesteps/gravel_3.ogg", "footsteps on gravel"),
        ("minetest-data", "mods/default/sounds/default_break_glass.1.ogg", "glass breaking"),
        ("flightgear-data-base", "flightgear/Sounds/door-closing.wav", "a door closing"),
        ("widelands-data", "data/sound/animals/crickets1_00.ogg", "crickets chirping"),
        ("sonic-pi-samples", "sonic-pi/samples/drum_snare_hard.flac", "a snare drum hit"),
        ("hydrogen-drumkits", "drumkits/K/hihat-closed-1.flac", "a closed hi-hat hit"),
        ("bucklespring-data", "usr/share/buckle/wav/1a-0.wav", "a key press on a mechanical keyboard"),
        ("supertuxkart-data", "data/sfx/thunder.ogg", "thunder"),
    ],
)
def test_specific_phrases(package, rel, phrase):
    captions, tags, got = describe(BY_NAME[package], rel)
    assert got == phrase
    assert captions[0].lower() == phrase
    assert len(captions) >= 2  # sentence + keyword caption
    assert all(t == t.lower() and not any(ch.isdigit() for ch in t) for t in tags)
    assert not {"sfx", "snd", "sound", "loop", "var", "ogg", "wav"} & set(tags)


def test_given_text_first_and_debiased():
    captions, tags, phrase = describe(
        BY_NAME["minetest-data"], "x/sounds/foo.ogg", given=["A man whistles a tune"], extra_words=["whistle"]
    )
    assert captions[0] == "A person whistles a tune"
    assert "whistle" in tags


def test_phrase_fallbacks():
    assert event_phrase([], hint="a hint") == "a hint"
    assert event_phrase(["church", "bell"]) == "a church bell"
    assert event_phrase(["rooster", "crow"]) == "a rooster crowing"


@pytest.mark.parametrize(
    "words, first",
    [
        (["cow", "moo"], "Moo"),
        (["footstep", "gravel"], "Walk, footsteps"),
        (["bass", "drum"], "Bass drum"),
        (["hi", "hat", "closed"], "Hi-hat"),
        (["rain"], "Rain"),
        (["dogs", "barking"], "Dog"),
        (["helicopter"], "Helicopter"),
        (["glass", "break"], "Glass"),
        (["keyboard"], "Computer keyboard"),
        (["clock"], "Tick-tock"),
    ],
)
def test_audioset_labels(onto, words, first):
    labels = onto.labels_for(words)
    assert labels, words
    assert first in labels
    assert all(name in onto.by_name for name in labels)


def test_generic_classes_never_produced(onto):
    assert onto.labels_for(["music", "loop", "fly", "mouse"]) == []


def test_cow_labels_most_specific_first(onto):
    labels = onto.labels_for(["animal", "cattle", "cow", "moo"])
    assert labels[:2] == ["Moo", "Cattle, bovinae"]
    assert labels[-1] == "Animal"


def test_gm_tables_use_real_audioset_names(onto):
    assert len(PROGRAMS) == 128
    assert PROGRAMS[127] is None and PROGRAMS[52] is None  # gunshot, choir: skipped
    names = {n for e in PROGRAMS if e for n in e[2]} | {n for _, ls in PERCUSSION.values() for n in ls}
    assert names <= set(onto.by_name)
    rs = renders()
    assert len({r.name for r in rs}) == len(rs)
    assert any(r.phrase == "birds tweeting" for r in rs)


def test_midi_file_layout():
    blob = midi_file([(0, b"\xc0\x00"), (0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")])
    assert blob[:4] == b"MThd" and blob[14:18] == b"MTrk"
    assert int.from_bytes(blob[18:22], "big") == len(blob) - 22
    assert blob.endswith(b"\xff\x2f\x00")


def _tone(freq, seconds, sr=22050, seed=0):
    return tone(seconds, sr, freq=freq, noise=0.01, seed=seed)


def test_fingerprint_separates_sounds_and_matches_copies():
    a = A.fingerprint(_tone(440, 2.0), 22050)
    b = A.fingerprint(0.5 * _tone(440, 2.0, seed=1), 22050)
    c = A.fingerprint(_tone(1500, 2.0), 22050)
    assert a.shape == (A.FP_BANDS * A.FP_SEGMENTS,)
    assert float(a @ b) > 0.995
    assert float(a @ c) < 0.9


def test_find_duplicates_keeps_first():
    fp = A.fingerprint(_tone(440, 2.0), 22050).tolist()
    other = A.fingerprint(_tone(1500, 2.0), 22050).tolist()
    items = [
        ("a", A.Analysis("ok", 2.0, 22050, "h1", fp)),
        ("b", A.Analysis("ok", 2.0, 22050, "h1", fp)),
        ("c", A.Analysis("ok", 2.05, 22050, "h2", fp)),
        ("d", A.Analysis("ok", 5.0, 22050, "h3", fp)),  # same spectrum, other length
        ("e", A.Analysis("ok", 2.0, 22050, "h4", other)),
    ]
    assert A.find_duplicates(items) == {"b": ("a", "exact"), "c": ("a", "near")}


def test_windows():
    assert A.windows(5.0) == [(0.0, 5.0)]
    assert A.windows(12.0) == [(0.0, 12.0)]
    assert A.windows(35.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert len(A.windows(600.0)) == 6


def test_source_patterns_are_tuples():
    for s in SOURCES:
        for name in ("members", "include", "exclude", "keep", "context"):
            assert isinstance(getattr(s, name), tuple), (s.package, name)
    with pytest.raises(TypeError):
        Source("x", "MIT", exclude=("ab"))
