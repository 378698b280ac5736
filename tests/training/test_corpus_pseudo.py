"""``clap-train corpus-pseudo`` on a tiny fake corpus with a stub tagger (offline, no network):
agreement with path words, the strict threshold for silent paths, music/speech exclusion,
split protection (held-out packages never scanned, copies of held-out clips never added),
windows of long files, extending existing clips, determinism. One test runs the real YAMNet
and skips when ``shared/data/pretrained/yamnet`` is not beside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.cli import main as clap_train
from training.convert.yamnet import class_names
from training.corpus.ontology import load_ontology
from training.corpus.pseudo import PseudoConfig, judge, report_path, run, yamnet_tagger
from training.corpus.pseudo_labels import CLASS_MAP, class_tree
from training.corpus.sources import Source
from training.data.readers import read_jsonl

SR = 16000
NAMES = class_names(CLASS_MAP)
YAMNET = Path(__file__).resolve().parents[2].parent / "shared/data/pretrained/yamnet/yamnet_spectra_in.tflite"
SOURCES = (Source("trainpkg", "CC0"), Source("heldpkg", "CC0"))

# stub scores by file stem; anything else scores zero everywhere
STUB = {
    "rain_01": {"Rain on surface": 0.6, "Rain": 0.5},  # existing clip: gains a caption
    "rain_roof": {"Rain on surface": 0.5, "Rain": 0.4},  # path "rain" agrees
    "x17": {"Dog": 0.9, "Bark": 0.8, "Animal": 0.95},  # path says nothing, YAMNet is sure
    "zz3": {"Dog": 0.5},  # path says nothing, YAMNet unsure
    "cow_moo": {"Dog": 0.9, "Bark": 0.85},  # path says cow: disagreement
    "thing": {"Speech": 0.8, "Door": 0.5},  # speech
    "knock_guitar": {"Knock": 0.6, "Guitar": 0.4},  # an instrument is music (a child)
    "wind_long": {"Wind": 0.6, "Rustling leaves": 0.3},  # long: cut into windows
    "dog_bark": {"Bow-wow": 0.7, "Dog": 0.6},  # extra-sfx clip: extended only
}


def _sound(freq: float, seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    chirp = np.sin(2 * np.pi * (freq + 40 * seed * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * (seed + 1) * t))
    return (0.4 * chirp + 0.05 * rng.standard_normal(t.size)).astype("float32")


def _write(path: Path, x: np.ndarray, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, format=fmt, subtype="PCM_16")
    return path


class Stub:
    """A tagger that records what it was asked: paths -> scores from ``STUB`` by file stem."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, path: str, spans) -> np.ndarray:
        self.calls.append(path)
        v = np.zeros(len(NAMES), np.float32)
        for name, score in STUB.get(Path(path).stem, {}).items():
            v[NAMES.index(name)] = score
        return np.stack([v for _ in spans])


def _row(audio: str, pkg: str, split: str, src: str, labels: list[str], caption: str) -> dict:
    return {
        "audio": audio,
        "captions": [caption],
        "tags": [],
        "labels": labels,
        "split": split,
        "licence": "CC0",
        "meta": {
            "package": pkg,
            "source_path": src,
            "attribution": "",
            "duration_s": 1.5,
            "primary_label": labels[0],
            "window": None,
        },
    }


@pytest.fixture()
def corpus(tmp_path: Path) -> PseudoConfig:
    out, ext = tmp_path / "corpus", tmp_path / "ext"
    held = _sound(900, 1.5, 9)
    _write(out / "audio/trainpkg/sounds/rain_01.flac", _sound(300, 1.5, 1), "FLAC")
    _write(out / "audio/heldpkg/sounds/owl.flac", held, "FLAC")
    _write(out / "audio/extra-sfx_a_b/dog_bark.flac", _sound(700, 1.5, 8), "FLAC")
    rows = [
        _row("audio/trainpkg/sounds/rain_01.flac", "trainpkg", "train", "sounds/rain_01.wav", ["Rain"], "Rain"),
        _row(
            "audio/extra-sfx_a_b/dog_bark.flac", "extra-sfx:a/b", "train", "a/b/dog_bark.ogg", ["Dog"], "A dog barking"
        ),
        _row("audio/heldpkg/sounds/owl.flac", "heldpkg", "heldout", "sounds/owl.wav", ["Owl"], "An owl hooting"),
    ]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "report.json").write_text(
        json.dumps({"config": {"heldout": ["heldpkg"], "val": []}, "packages": {"trainpkg": {}, "heldpkg": {}}})
    )
    files = {
        "rain_01": (300, 1.5),
        "rain_roof": (350, 2.0),
        "x17": (420, 1.2),
        "zz3": (500, 1.1),
        "cow_moo": (560, 1.3),
        "thing": (610, 1.4),
        "knock_guitar": (660, 1.0),
        "bell_song": (720, 1.0),
        "wind_long": (200, 25.0),
        "tick": (800, 0.1),
    }
    for k, (stem, (f, s)) in enumerate(files.items()):
        _write(ext / f"trainpkg/sounds/{stem}.wav", _sound(f, s, k + 1))
    _write(ext / "trainpkg/sounds/copy_of_owl.wav", held)  # a held-out recording's copy
    _write(ext / "heldpkg/sounds/owl.wav", held)
    _write(ext / "heldpkg/sounds/rain_more.wav", _sound(330, 2.0, 12))
    return PseudoConfig(
        out, roots={"trainpkg": ext / "trainpkg", "heldpkg": ext / "heldpkg"}, sources=SOURCES, progress=False
    )


def _rows(cfg: PseudoConfig) -> dict[str, dict]:
    return {r["audio"]: r for r in map(json.loads, (cfg.corpus / cfg.out_name).read_text().splitlines())}


def test_agreement_thresholds_exclusions_and_split_protection(corpus: PseudoConfig):
    stub = Stub()
    report = run(corpus, stub, NAMES)
    rows = _rows(corpus)
    new = {a: r for a, r in rows.items() if r["meta"].get("pseudo", {}).get("new")}
    assert sorted(new) == [
        "audio/trainpkg/sounds/rain_roof.flac",
        "audio/trainpkg/sounds/wind_long_w00.flac",
        "audio/trainpkg/sounds/wind_long_w01.flac",
        "audio/trainpkg/sounds/x17.flac",
    ]
    rain = new["audio/trainpkg/sounds/rain_roof.flac"]
    assert rain["captions"][0] == "Rain falling on a surface"
    assert rain["meta"]["pseudo"] == {"classes": ["Rain on surface"], "scores": [0.5], "agreement": "path", "new": True}
    assert rain["labels"][0] == "Rain on surface" and "Rain" in rain["labels"]
    assert rain["split"] == "train" and rain["meta"]["source_path"] == "sounds/rain_roof.wav"
    dog = new["audio/trainpkg/sounds/x17.flac"]
    assert dog["meta"]["pseudo"]["agreement"] == "confident"
    assert dog["captions"][0] == "A dog barking"  # Bark is more specific than Dog
    wind = new["audio/trainpkg/sounds/wind_long_w01.flac"]
    assert wind["meta"]["window"] == {"index": 1, "start_s": 10.0, "end_s": 20.0}
    assert wind["meta"]["duration_s"] == 10.0
    for audio in new:
        info = sf.info(str(corpus.corpus / audio))
        assert info.format == "FLAC" and info.channels == 1
    # existing clips: the train one gains an agreeing caption; held-out untouched
    old = rows["audio/trainpkg/sounds/rain_01.flac"]
    assert old["captions"] == ["Rain", "Rain falling on a surface", "The sound of many rain drops striking a surface"]
    assert old["meta"]["pseudo"]["new"] is False
    assert "pseudo" in rows["audio/extra-sfx_a_b/dog_bark.flac"]["meta"]
    held = json.loads((corpus.corpus / "manifest.jsonl").read_text().splitlines()[2])
    assert rows["audio/heldpkg/sounds/owl.flac"] == held
    # never scanned or tagged: held-out package, held-out clip, the copy of a held-out
    # recording, music/speech path words, files too short to use
    asked = "\n".join(stub.calls)
    for never in ("heldpkg", "copy_of_owl", "bell_song", "tick"):
        assert never not in asked
    assert report["new_windows_matching_val_or_heldout"]["count"] == 1
    pk = report["packages"]["trainpkg"]
    assert pk["new: music/speech"] == 2 and pk["new: disagree"] == 1 and pk["new: unsure"] == 1
    assert pk["path-word filters"] == {"music/speech (song)": 1}
    assert report["after"]["new_clips"] == {"path": 3, "confident": 1}
    assert report["after"]["train"]["clips"] == report["before"]["train"]["clips"] + 4
    assert report["captions"]["existing_clips_extended"] == 2
    assert "heldpkg" not in report["packages"] and report["protected_packages"] == ["heldpkg"]
    assert json.loads(report_path(corpus).read_text())["after"] == report["after"]
    records, issues = read_jsonl(corpus.corpus / corpus.out_name, probe_audio=True)
    assert issues == [] and len(records) == len(rows) == 7


def test_deterministic_and_idempotent(corpus: PseudoConfig):
    first_stub, second_stub = Stub(), Stub()
    first_report = run(corpus, first_stub, NAMES)
    first = (corpus.corpus / corpus.out_name).read_bytes()
    second_report = run(corpus, second_stub, NAMES)  # FLACs exist now: kept, same manifest
    assert (corpus.corpus / corpus.out_name).read_bytes() == first
    assert first_stub.calls == second_stub.calls  # same files, same order
    assert {k: v for k, v in first_report.items() if k != "seconds"} == {
        k: v for k, v in second_report.items() if k != "seconds"
    }


def test_dry_run_writes_only_the_report(corpus: PseudoConfig):
    corpus.write = False
    report = run(corpus, Stub(), NAMES)
    assert not (corpus.corpus / corpus.out_name).exists()
    assert not (corpus.corpus / "audio/trainpkg/sounds/x17.flac").exists()
    assert report_path(corpus).exists() and report["after"]["new_clips"]["confident"] == 1


def test_judge_rules():
    tree = class_tree(NAMES, load_ontology(), ("Music", "Speech", "Singing"))
    cfg = PseudoConfig(Path("."))

    def v(scores: dict, labels: list[str]):
        x = np.zeros(len(NAMES))
        for name, s in scores.items():
            x[NAMES.index(name)] = s
        return judge(x, labels, tree, cfg)

    assert v({"Rain on surface": 0.3}, ["Rain"]) == ("path", ["Rain on surface"])  # below path
    assert v({"Rain": 0.3}, ["Rain on surface"])[0] == "disagree"  # above: no
    assert v({"Fly, housefly": 0.5}, ["Bee, wasp, etc.", "Insect"])[0] == "disagree"  # refined
    assert v({"Dog": 0.9}, ["Animal"])[0] == "disagree"  # not through a top-level class
    assert v({"Dog": 0.65}, [])[0] == "unsure" and v({"Dog": 0.75}, [])[0] == "confident"
    assert v({"Knock": 0.9, "Drum": 0.35}, [])[0] == "music/speech"  # an instrument is Music
    assert v({"Knock": 0.9, "Narration, monologue": 0.31}, [])[0] == "music/speech"
    assert v({"Knock": 0.9, "Narration, monologue": 0.29}, [])[0] == "confident"
    assert v({"Silence": 0.9, "Inside, small room": 0.8}, [])[0] == "unsure"  # generic classes
    assert v({"Bark": 0.8, "Bow-wow": 0.7, "Growling": 0.6}, ["Dog"]) == ("path", ["Bark"])
    # a class far down the clip's list does not count as agreement
    assert v({"Glass": 0.9, "Chink, clink": 0.8, "Shatter": 0.7, "Crack": 0.3}, ["Wood"])[0] == "disagree"


def test_cli_dispatch(capsys):
    with pytest.raises(SystemExit) as exc:
        clap_train(["corpus-pseudo", "--help"])
    assert exc.value.code == 0 and "--confident-min" in capsys.readouterr().out


@pytest.mark.skipif(not YAMNET.exists(), reason="shared/data/pretrained/yamnet not present")
def test_real_yamnet(corpus: PseudoConfig, tmp_path: Path):
    tag = yamnet_tagger(YAMNET, threads=1)
    path = _write(tmp_path / "noise.wav", _sound(440, 3.0, 3))
    scores = tag(str(path), [(0.0, float("inf")), (0.0, 1.0), (1.0, 3.0)])
    assert scores.shape == (3, len(NAMES)) and np.all((scores >= 0) & (scores <= 1))
    assert not np.allclose(scores[1], scores[2])  # windows see their own patches
    report = run(corpus, tag, NAMES)
    assert report["before"]["all"]["clips"] == 3 and report["after"]["all"]["clips"] >= 3
    rows = _rows(corpus)
    assert rows["audio/heldpkg/sounds/owl.flac"]["captions"] == ["An owl hooting"]
