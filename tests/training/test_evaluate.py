"""Evaluation end to end: ONNX and torch embedders agree, tasks handle their data, the CLI runs.

Real-model tests use the session ``tiny_model_dir`` (fused tiny random CLAP exported by our own
pipeline) and generated WAV files, one longer than 10 s so the fusion branch runs. Task logic is
tested with a fake embedder whose vectors are known, which costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import EvaluationError
from training.evaluate import (
    EvaluationReport,
    evaluate_linear_probe,
    evaluate_retrieval,
    evaluate_zero_shot,
    format_report,
    main,
)

sf = pytest.importorskip("soundfile")

SR = 16_000
CLIPS = {  # name: (seconds, tone Hz or None for noise, caption list, label)
    "dog_a": (2.0, 440.0, ["a dog barks", "a dog barking in the rain"], "dog"),
    "rain_a": (3.0, None, ["rain falling on a tin roof"], "rain"),
    "bell_a": (12.5, 880.0, ["church bells ring in the distance", "bells", "a bell rings"], "bell"),
    "dog_b": (1.5, 300.0, ["the sound of a cat"], "dog"),
    "rain_b": (4.0, None, [], "rain"),
}


@dataclass(frozen=True)
class Rec:
    audio: str
    captions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    split: str | None = "test"


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(5)
    out = {}
    for name, (seconds, tone, _, _) in CLIPS.items():
        t = np.arange(int(seconds * SR)) / SR
        wave = 0.3 * rng.standard_normal(t.size) if tone is None else 0.4 * np.sin(2 * np.pi * tone * t)
        wave *= np.linspace(0.3, 1.0, t.size)  # a level change, so the fused views differ
        out[name] = str(folder / f"{name}.wav")
        sf.write(out[name], wave.astype(np.float32), SR)
    return out


@pytest.fixture(scope="module")
def records(wavs) -> list[Rec]:
    return [Rec(wavs[n], tuple(caps), (label,)) for n, (_, _, caps, label) in CLIPS.items()]


@pytest.fixture(scope="module")
def onnx_embedder(tiny_model_dir):
    from training.evaluate import OnnxEmbedder

    return OnnxEmbedder(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def torch_embedder(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.factories import save_hf_folder, tiny_clap_model
    from training.convert.hf import load_hf_folder
    from training.evaluate import TorchEmbedder

    # The recipe of the tiny_model_dir fixture: this model's ONNX export IS that folder.
    hf = save_hf_folder(tiny_clap_model(True, vocab_size=400, seed=21), tmp_path_factory.mktemp("hf-eval"))
    return TorchEmbedder.from_converted(load_hf_folder(hf), batch_size=2)


def test_onnx_embedder_gives_the_encoder_vectors(onnx_embedder, wavs):
    paths = list(wavs.values())
    expected = np.stack([item.vector for item in onnx_embedder.encoder.embed_files(paths)])
    np.testing.assert_array_equal(onnx_embedder.embed_audio(paths), expected)
    texts = ["a dog barks", "This is a sound of rain."]
    np.testing.assert_array_equal(onnx_embedder.embed_texts(texts), onnx_embedder.encoder.embed_text(texts))
    assert onnx_embedder.identity["kind"] == "onnx" and onnx_embedder.identity["fingerprint"]


def test_torch_and_onnx_give_the_same_numbers(onnx_embedder, torch_embedder, wavs, records):
    from training.evaluate import CachedEmbedder

    # cached: each file is embedded once per embedder, whatever the number of tasks
    onnx_embedder, torch_embedder = CachedEmbedder(onnx_embedder), CachedEmbedder(torch_embedder)
    paths = list(wavs.values())
    torch_audio = torch_embedder.embed_audio(paths)
    assert np.abs(torch_audio - onnx_embedder.embed_audio(paths)).max() < 1e-4
    texts = [c for _, _, caps, _ in CLIPS.values() for c in caps] + ["This is a sound of dog."]
    assert np.abs(torch_embedder.embed_texts(texts) - onnx_embedder.embed_texts(texts)).max() < 1e-4
    for task in (evaluate_retrieval, evaluate_zero_shot):
        on_torch, on_onnx = task(torch_embedder, records), task(onnx_embedder, records)
        assert on_torch.metrics == on_onnx.metrics and on_torch.counts == on_onnx.counts
    retrieval = evaluate_retrieval(onnx_embedder, records)
    assert retrieval.counts == {"records": 5, "clips": 5, "captions": 7, "clips_with_captions": 4, "skipped": 0}
    assert retrieval.metrics["audio_to_text"]["queries"] == 4


def test_failed_audio_is_reported_or_skipped(tiny_model_dir, records, tmp_path):
    from training.evaluate import OnnxEmbedder

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really audio")
    bad = [*records, Rec(str(broken), ("glass breaking",), ("dog",))]
    with pytest.raises(EvaluationError, match="broken.wav"):
        evaluate_retrieval(OnnxEmbedder(tiny_model_dir, device="cpu"), bad)
    result = evaluate_retrieval(OnnxEmbedder(tiny_model_dir, device="cpu", skip_failed=True), bad)
    assert [s["path"] for s in result.skipped] == [str(broken)] and result.skipped[0]["reason"]
    assert result.counts["clips"] == 5 and result.counts["captions"] == 7 and result.counts["skipped"] == 1


# ----------------------------------------------------------------------------- task logic, fake vectors
CLASSES = ("dog", "rain", "bell")


class FakeEmbedder:
    """Audio: the one-hot of the class named in the file name plus a little noise; texts: the
    one-hot of the class they mention."""

    identity = {"kind": "fake", "name": "fake"}

    def __init__(self):
        self.failures: dict[str, str] = {}
        self.audio_calls = 0

    @staticmethod
    def _onehot(text: str) -> np.ndarray:
        v = np.full(8, 0.01, np.float32)
        for k, c in enumerate(CLASSES):
            if c in text:
                v[k] = 1.0
        v[7] += (sum(map(ord, text)) % 13) / 100  # a small deterministic "noise"
        return v / np.linalg.norm(v)

    def embed_audio(self, paths):
        self.audio_calls += 1
        return np.stack([self._onehot(p.rsplit("/", 1)[-1]) for p in paths])

    def embed_texts(self, texts):
        return np.stack([self._onehot(t) for t in texts])


def _fake_records(split="test", n=2):
    return [Rec(f"/x/{c}_{i}.wav", (f"a {c} sound",), (c,), split) for c in CLASSES for i in range(n)]


def test_zero_shot_labels_template_and_multilabel():
    fake = FakeEmbedder()
    result = evaluate_zero_shot(fake, _fake_records())
    assert result.metrics["top1"] == 1.0 and result.metrics["per_class"] == {"bell": 1.0, "dog": 1.0, "rain": 1.0}
    assert result.settings["template"] == "This is a sound of {label}." and result.settings["labels"] == sorted(CLASSES)
    subset = evaluate_zero_shot(fake, _fake_records(), labels=["rain", "dog"], template="{label} noise")
    assert (
        subset.counts["clips"] == 4 and subset.counts["left_out"] == 2 and subset.settings["labels"] == ["rain", "dog"]
    )
    with pytest.raises(EvaluationError, match="placeholder"):
        evaluate_zero_shot(fake, _fake_records(), template="no placeholder")
    two = [Rec("/x/dog_rain.wav", (), ("dog", "rain"))]
    with pytest.raises(EvaluationError, match="multilabel"):
        evaluate_zero_shot(fake, two + _fake_records())
    multi = evaluate_zero_shot(fake, two + _fake_records(), multilabel=True)
    assert multi.task == "zeroshot-multilabel" and multi.metrics["mAP"] == 1.0
    assert set(multi.metrics["per_class_ap"]) == set(CLASSES)


def test_linear_probe_task():
    result = evaluate_linear_probe(
        FakeEmbedder(),
        _fake_records("train", 4),
        _fake_records("test"),
        _fake_records("val"),
        weight_decays=(1e-3, 1e-1),
    )
    assert result.metrics["test_accuracy"] == 1.0 and result.counts["train"] == 12
    assert result.counts["val"] == 6 and set(result.metrics["per_class_accuracy"]) == set(CLASSES)
    with pytest.raises(EvaluationError, match="2 classes"):
        evaluate_linear_probe(FakeEmbedder(), _fake_records("train")[:1], _fake_records())


def test_report_round_trips_through_json():
    fake = FakeEmbedder()
    results = [evaluate_retrieval(fake, _fake_records()), evaluate_zero_shot(fake, _fake_records())]
    report = EvaluationReport(model=fake.identity, data={"split": "test"}, results=results)
    text = report.to_json()
    again = EvaluationReport.from_dict(json.loads(text))
    assert again.to_dict() == report.to_dict() == json.loads(text)
    table = format_report(report)
    assert "text_to_audio" in table and "R@10" in table and "This is a sound of {label}." in table


# ----------------------------------------------------------------------------- CLI
def _jsonl_reader(path, base=None):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        Rec(
            str(base / r["audio"]) if base else r["audio"],
            tuple(r.get("captions", ())),
            tuple(r.get("labels", ())),
            r.get("split"),
        )
        for r in rows
    ], []


def _reader_or_fallback():
    """The project's manifest reader when present (``read_records=None``), else our own."""
    try:
        import training.data.readers  # noqa: F401
    except ImportError:
        return _jsonl_reader
    return None


def test_cli_on_a_model_folder(tiny_model_dir, wavs, tmp_path, capsys):
    manifest = Path(wavs["dog_a"]).parent / "data.jsonl"  # audio paths relative to it
    lines = [
        {
            "audio": Path(wavs[n]).name,
            "labels": [label],
            "split": split,
            **({"captions": caps} if caps else {"tags": [label]}),
        }
        for split in ("train", "test")
        for n, (_, _, caps, label) in CLIPS.items()
    ]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "reports" / "report.json"
    reader = _reader_or_fallback()
    if reader is not None:
        reader = lambda path: _jsonl_reader(path, base=path.parent)  # noqa: E731
    code = main(
        ["--model", str(tiny_model_dir), "--manifest", str(manifest), "--out", str(out), "--device", "cpu"],
        read_records=reader,
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert [r["task"] for r in report["results"]] == ["retrieval", "zeroshot", "linear-probe"]
    assert report["model"]["kind"] == "onnx" and report["data"]["records"] == 5
    assert report["results"][0]["counts"]["clips"] == 5 and report["results"][0]["counts"]["captions"] == 7
    assert "text_to_audio" in capsys.readouterr().out
    code = main(["--model", str(tiny_model_dir), "--manifest", str(manifest), "--split", "nope"], read_records=reader)
    assert code == 2 and "splits present: test, train" in capsys.readouterr().err


def test_cli_checkpoint_goes_through_the_torch_loader(tmp_path, capsys):
    manifest = tmp_path / "data.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"audio": r.audio, "captions": list(r.captions), "labels": list(r.labels), "split": "test"})
            for r in _fake_records()
        )
    )
    argv = ["--checkpoint", str(tmp_path / "ck.pt"), "--manifest", str(manifest), "--task", "zeroshot"]
    argv += ["--labels", "dog,rain"]
    assert main(argv, read_records=_jsonl_reader) == 2
    assert "no checkpoint loader" in capsys.readouterr().err
    seen = []
    fake = FakeEmbedder()
    assert main(argv, read_records=_jsonl_reader, torch_loader=lambda p, args: seen.append(p) or fake) == 0
    assert seen == [tmp_path / "ck.pt"] and "zeroshot" in capsys.readouterr().out
