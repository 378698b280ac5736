"""Manifest readers: happy paths, bad lines with their line numbers, wrong columns, public layouts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.errors import DataManifestError
from tests.helpers import tone
from training.data.public_readers import expand_shards, read_audiocaps, read_clotho, read_webdataset
from training.data.readers import read_any, read_csv, read_jsonl, summarize
from training.data.records import ClipRecord, split_tar_ref


def wav(path: Path, seconds: float = 0.1, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr, noise=0), sr)
    return path


def lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# ----------------------------------------------------------------------------- JSONL


def test_jsonl_happy_path(tmp_path):
    wav(tmp_path / "clips" / "dog.wav")
    rain = wav(tmp_path / "elsewhere" / "rain.wav")
    wav(tmp_path / "birds.wav")
    manifest = lines(
        tmp_path / "m.jsonl",
        [
            {"audio": "clips/dog.wav", "caption": "A dog barks", "tags": ["dog", "bark"]},
            "",
            {
                "audio": str(rain),
                "captions": ["Rain on a roof", "Heavy rain"],
                "split": "test",
                "labels": "Rain; Rain on surface",
                "licence": "CC-BY-4.0",
            },
            {"audio": "birds.wav", "tags": "birds, dawn; chorus", "meta": {"origin": "field"}},
        ],
    )
    records, issues = read_jsonl(manifest, split="train")
    assert issues == []
    dog, rain_rec, birds = records
    assert dog == ClipRecord(
        str(tmp_path / "clips" / "dog.wav"),
        ("A dog barks",),
        ("dog", "bark"),
        split="train",
        source=str(manifest),
        line=1,
    )
    assert rain_rec.audio == str(rain) and rain_rec.captions == ("Rain on a roof", "Heavy rain")
    assert rain_rec.labels == ("Rain", "Rain on surface") and rain_rec.split == "test"
    assert rain_rec.licence == "CC-BY-4.0" and rain_rec.line == 3
    assert birds.captions == () and birds.tags == ("birds", "dawn", "chorus")
    assert birds.meta == {"origin": "field"} and birds.where == f"{manifest}:4"


BAD_JSONL = [
    {"audio": "ok.wav", "caption": "fine"},  # 1 ok
    '{"audio": "ok.wav", "caption": ',  # 2 broken JSON
    {"file": "ok.wav", "caption": "x"},  # 3 unknown key, no audio
    {"caption": "no audio key"},  # 4 missing audio
    {"audio": "ok.wav", "caption": "  "},  # 5 empty caption
    {"audio": "ok.wav", "captions": ["good", ""]},  # 6 empty caption in list
    {"audio": "missing.wav", "caption": "gone"},  # 7 file not found
    {"audio": "ok.wav"},  # 8 neither caption nor tags
    {"audio": "ok.wav", "caption": 3},  # 9 wrong type
    "[1, 2]",  # 10 not an object
    {"audio": "ok.wav", "tags": ["only", "tags"]},  # 11 ok
]


def test_jsonl_bad_lines_are_reported_with_line_numbers(tmp_path):
    wav(tmp_path / "ok.wav")
    manifest = lines(tmp_path / "m.jsonl", BAD_JSONL)
    records, issues = read_jsonl(manifest)
    assert [r.line for r in records] == [1, 11]
    assert [i.line for i in issues] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    reasons = {i.line: i.reason for i in issues}
    assert "not valid JSON" in reasons[2]
    assert "wrong key(s) file" in reasons[3] and "expected audio" in reasons[3]
    assert "missing 'audio'" in reasons[4]
    assert reasons[5] == reasons[6] == "empty caption"
    assert "not found" in reasons[7] and "missing.wav" in reasons[7]
    assert reasons[8] == "no caption and no tags"
    assert "'caption' must be a string" in reasons[9]
    assert all(i.source == str(manifest) for i in issues)
    assert str(issues[0]).startswith(f"{manifest}:2: ")


def test_jsonl_fail_mode_raises_at_the_first_bad_line(tmp_path):
    wav(tmp_path / "ok.wav")
    manifest = lines(tmp_path / "m.jsonl", BAD_JSONL)
    with pytest.raises(DataManifestError, match=r"m\.jsonl:2: not valid JSON") as info:
        read_jsonl(manifest, on_error="fail")
    assert info.value.issue.line == 2 and info.value.code == "data.manifest"


def test_jsonl_extra_keys_can_go_to_meta(tmp_path):
    wav(tmp_path / "ok.wav")
    manifest = lines(tmp_path / "m.jsonl", [{"audio": "ok.wav", "caption": "c", "duration": 1.5}])
    (record,), issues = read_jsonl(manifest, extra="meta")
    assert issues == [] and record.meta == {"duration": 1.5}


def test_probe_audio_reports_undecodable_files(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"this is not a wav file at all" * 10)
    manifest = lines(tmp_path / "m.jsonl", [{"audio": "junk.wav", "caption": "c"}])
    records, issues = read_jsonl(manifest)
    assert len(records) == 1 and issues == []  # existence only, by default
    records, issues = read_jsonl(manifest, probe_audio=True)
    assert records == [] and "cannot be used" in issues[0].reason and "WAV" in issues[0].reason


# ----------------------------------------------------------------------------- CSV


def test_csv_happy_path(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        wav(tmp_path / "audio" / name)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "audio,caption_1,caption_2,caption_3,tags,labels,split\n"
        'audio/a.wav,First,Second,,dog;bark,"Dog; Domestic animals, pets",train\n'
        "audio/b.wav,,,,rain,,\n"
        'audio/c.wav,"One, with a comma",,,,,valid\n'
    )
    records, issues = read_csv(manifest)
    assert issues == []
    a, b, c = records
    assert a.captions == ("First", "Second") and a.tags == ("dog", "bark")
    assert a.labels == ("Dog", "Domestic animals, pets") and a.split == "train" and a.line == 2
    assert b.captions == () and b.tags == ("rain",) and b.split is None
    assert c.captions == ("One, with a comma",) and c.line == 4


def test_csv_pipe_separated_captions_and_bad_rows(tmp_path):
    wav(tmp_path / "a.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "audio,captions,tags\na.wav,one|two,\n,orphan,\na.wav,one||three,\na.wav,,\na.wav,x,y,z\nnope.wav,x,\n"
    )
    records, issues = read_csv(manifest)
    assert [r.captions for r in records] == [("one", "two")]
    assert [(i.line, i.reason.split(" (")[0]) for i in issues] == [
        (3, "'audio' is empty"),
        (4, "empty caption"),
        (5, "no caption and no tags"),
        (6, "4 fields but 3 columns"),
        (7, f"audio file not found: {tmp_path / 'nope.wav'}"),
    ]


@pytest.mark.parametrize(
    "header, missing",
    [("file,text", "file, text"), ("audio,captoin", "unknown: captoin"), ("audio,split", "audio, split")],
)
def test_csv_wrong_columns_name_found_and_expected(tmp_path, header, missing):
    manifest = tmp_path / "m.csv"
    manifest.write_text(header + "\nx,y\n")
    with pytest.raises(DataManifestError, match="wrong columns") as info:
        read_csv(manifest)  # even with on_error="skip": every row would be bad
    message = str(info.value)
    assert missing in message and "expected 'audio'" in message and info.value.issue.line == 1


# ----------------------------------------------------------------------------- public layouts


def test_audiocaps_groups_captions_per_clip(tmp_path):
    audio = tmp_path / "wavs"
    wav(audio / "yid_A.wav")
    wav(audio / "yid_B_30.flac")
    manifest = tmp_path / "val.csv"
    manifest.write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "1,yid_A,0,A man talks\n"
        "2,yid_B,30,Birds chirp\n"
        "3,yid_A,0,Someone speaks\n"
        "4,yid_C,10,No audio for this one\n"
        "5,yid_A,0,\n"
        "6,yid_B,30.0,Birds sing loudly\n"
    )
    records, issues = read_audiocaps(manifest, audio, split="val")
    a, b = records
    assert a.audio == str(audio / "yid_A.wav") and a.captions == ("A man talks", "Someone speaks")
    assert a.line == 2 and a.split == "val" and a.meta["audiocap_ids"] == ["1", "3"]
    assert b.audio == str(audio / "yid_B_30.flac") and b.captions == ("Birds chirp", "Birds sing loudly")
    assert [(i.line, i.reason[:23]) for i in issues] == [(5, "no audio for youtube_id"), (6, "empty caption")]
    only_plain, issues = read_audiocaps(manifest, audio, templates=("{youtube_id}.{ext}",))
    assert [r.meta["youtube_id"] for r in only_plain] == ["yid_A"]
    assert read_any(manifest, audio_dir=audio)[0] == read_audiocaps(manifest, audio)[0]


def test_clotho(tmp_path):
    audio = tmp_path / "development"
    wav(audio / "Rain, heavy on roof.wav")
    wav(audio / "door creak 2.wav")
    manifest = tmp_path / "clotho_captions_development.csv"
    rows = [
        ["file_name"] + [f"caption_{k}" for k in range(1, 6)],
        ["Rain, heavy on roof.wav"] + [f"rain caption {k}" for k in range(1, 6)],
        ["door creak 2.wav"] + [f"a door creaks {k}" for k in range(1, 6)],
        ["absent.wav"] + ["x"] * 5,
    ]
    import csv

    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    records, issues = read_clotho(manifest, audio, split="train")
    assert [r.audio for r in records] == [str(audio / "Rain, heavy on roof.wav"), str(audio / "door creak 2.wav")]
    assert records[0].captions == tuple(f"rain caption {k}" for k in range(1, 6))
    assert {r.split for r in records} == {"train"} and [i.line for i in issues] == [4]
    assert read_any(manifest, audio_dir=audio, split="train") == (records, issues)


def _flac_bytes(seconds: float = 0.1, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), np.float32) + 0.1, sr, format="FLAC")
    return buf.getvalue()


def make_shard(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    """A LAION-style WebDataset shard: ``{key: {ext: bytes}}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def laion_json(text, tags=(), **extra) -> bytes:
    return json.dumps({"text": text, "tag": list(tags), "original_data": {"id": 7}, **extra}).encode()


def test_webdataset_shards(tmp_path):
    audio = _flac_bytes()
    make_shard(
        tmp_path / "shards" / "000000.tar",
        {
            "s0": {"flac": audio, "json": laion_json(["A dog barks", ""], ["dog"])},
            "s1": {"flac": audio},  # no json
            "s2": {"json": laion_json("no audio")},  # no audio
            "s3": {"flac": audio, "json": b"{broken"},
        },
    )
    make_shard(
        tmp_path / "shards" / "000001.tar",
        {
            "t0": {"wav": audio, "json": laion_json("Rain falls", license="CC0")},
            "t1": {"flac": audio, "json": laion_json([], [])},  # nothing to say
        },
    )
    pattern = str(tmp_path / "shards" / "{000000..000002}.tar")
    assert expand_shards(pattern)[-1].endswith("000002.tar")
    records, issues = read_webdataset(pattern, split="train")
    shard0, shard1 = (str(tmp_path / "shards" / f"00000{k}.tar") for k in (0, 1))
    assert [r.audio for r in records] == [f"{shard0}#s0.flac", f"{shard1}#t0.wav"]
    assert records[0].captions == ("A dog barks",) and records[0].tags == ("dog",)
    assert records[0].meta["original_data"] == {"id": 7} and records[0].split == "train"
    assert records[1].licence == "CC0" and split_tar_ref(records[1].audio) == (shard1, "t0.wav")
    assert [(i.source.rsplit("/", 1)[-1], i.line) for i in issues] == [
        ("000000.tar", 2),
        ("000000.tar", 3),
        ("000000.tar", 4),
        ("000001.tar", 2),
        ("000002.tar", 0),
    ]
    assert "no s1.json" in issues[0].reason and issues[-1].reason == "shard not found"
    assert read_any(str(tmp_path / "shards" / "*.tar"))[0] == records_without_split(records)
    report = summarize(issues)
    assert report.startswith("5 manifest problem(s) in 3 file(s)") and "000000.tar:2:" in report


def records_without_split(records):
    from dataclasses import replace

    return [replace(r, split=None) for r in records]


def test_expand_shards_and_summary_limits():
    assert expand_shards("a/{08..10}.tar") == ["a/08.tar", "a/09.tar", "a/10.tar"]
    assert expand_shards(["x.tar", "{p,q}-{1..2}.tar"]) == ["x.tar", "p-1.tar", "p-2.tar", "q-1.tar", "q-2.tar"]
    assert summarize([]) == "no manifest problems"


def test_read_any_dispatch(tmp_path):
    wav(tmp_path / "a.wav")
    j = lines(tmp_path / "m.jsonl", [{"audio": "a.wav", "caption": "c"}])
    c = tmp_path / "m.csv"
    c.write_text("audio,caption\na.wav,c\n")
    assert [r.captions for r in read_any(j)[0]] == [r.captions for r in read_any(c)[0]] == [("c",)]
    with pytest.raises(ValueError, match="cannot tell"):
        read_any(tmp_path / "m.txt")
