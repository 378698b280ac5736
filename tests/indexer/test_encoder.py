"""The torch-free runtime as users meet it: bad files, manifests, the CLI, bounded memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer import cli
from indexer.audio.decode import DecodeLimits
from indexer.errors import (
    AudioDecodeError,
    EmptyAudioError,
    InvalidSamplesError,
    ManifestError,
    ModelError,
    UnsupportedFormatError,
)
from indexer.models.encoder import ClapEncoder
from indexer.models.manifest import load_manifest
from tests.helpers import tone

MODELS = Path(__file__).resolve().parents[2] / "models"


def _tone(path, seconds, sr=48_000, channels=1, seed=0):
    sf.write(path, tone(seconds, sr, freq=(200, 2000), channels=channels, seed=seed), sr)
    return path


def test_serving_modules_do_not_import_torch():
    code = (
        "import sys, indexer.cli, indexer.models.encoder, indexer.audio.decode, indexer.audio.clip\n"
        "import indexer.cli.library, indexer.ingest.pipeline, indexer.store.store, indexer.search\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'librosa') if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_files_are_reported_and_never_stop_the_run(tiny_model_dir, tmp_path):
    good = _tone(tmp_path / "good.wav", 3.0)
    stereo = _tone(tmp_path / "stereo_44k.flac", 12.0, sr=44_100, channels=2, seed=1)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 48_000)
    nan = tmp_path / "nan.wav"
    wave = np.zeros(48_000, np.float32)
    wave[1000] = np.nan
    sf.write(nan, wave, 48_000, subtype="FLOAT")
    aac = tmp_path / "song.m4a"
    aac.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))  # an m4a header, then nothing: damaged
    ape = tmp_path / "song.ape"
    ape.write_bytes(b"MAC " + bytes(200))  # Monkey's Audio: neither decoder reads it
    missing = tmp_path / "missing.wav"
    paths = [good, garbage, empty, stereo, nan, aac, ape, missing]

    results = list(ClapEncoder.open(tiny_model_dir).embed_files(paths, batch_size=3))
    assert [r.path for r in results] == [str(p) for p in paths]
    expected = [
        None,
        AudioDecodeError,
        EmptyAudioError,
        None,
        InvalidSamplesError,
        AudioDecodeError,
        UnsupportedFormatError,
        AudioDecodeError,
    ]
    for result, error in zip(results, expected):
        if error is None:
            assert result.error is None and result.vector is not None
            assert abs(np.linalg.norm(result.vector) - 1.0) < 1e-5
        else:
            assert isinstance(result.error, error), (result.path, result.error)
            assert result.vector is None
            assert result.path in str(result.error)


def test_streamed_long_file_gives_the_same_vector(tiny_model_dir, tmp_path):
    path = _tone(tmp_path / "long.wav", 61.0, seed=4)
    encoder = ClapEncoder.open(tiny_model_dir)
    in_memory, _ = encoder.views_from_file(path)
    streamed, duration = encoder.views_from_file(path, limits=DecodeLimits(in_memory_max_s=5.0))
    assert duration == pytest.approx(61.0) and streamed.is_longer
    np.testing.assert_array_equal(in_memory.features, streamed.features)


def test_file_and_waveform_paths_agree(tiny_model_dir, tmp_path):
    path = _tone(tmp_path / "clip.wav", 7.0, seed=6)
    encoder = ClapEncoder.open(tiny_model_dir)
    wave, sr = sf.read(path, dtype="float32")
    from_file = next(encoder.embed_files([path])).vector
    np.testing.assert_array_equal(from_file, encoder.embed_waveforms([wave], sr)[0])


def test_manifest_problems_are_clear(tiny_model_dir, tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "audio.int8.onnx").unlink()
    with pytest.raises(ManifestError, match="audio.int8.onnx"):
        load_manifest(broken)
    data = json.loads((tiny_model_dir / "manifest.json").read_text())
    data["audio_frontend"]["long_policy"] = "center_crop"  # contradicts the fused tower
    (broken / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="fusion"):
        load_manifest(broken)
    with pytest.raises(ModelError, match="no 'fp16' variant"):
        ClapEncoder.open(tiny_model_dir, variant="fp16")


def test_manifest_describes_the_model(tiny_model_dir):
    manifest = load_manifest(tiny_model_dir)
    assert manifest.audio.fusion == "aff_2d" and manifest.audio.input_channels == 4
    assert manifest.audio_frontend.mel_scale == "htk" and manifest.audio_frontend.long_policy == "fusion"
    assert manifest.provenance.source_format == "hf_clap" and manifest.provenance.source_sha256
    assert manifest.variants["int8"].audio_min_cosine_to_fp32 > 0.99
    assert len(manifest.fingerprint) == 16


def test_cli_embeds_a_folder_and_reports_failures(tiny_model_dir, tmp_path, capsys):
    library = tmp_path / "library"
    (library / "sub").mkdir(parents=True)
    _tone(library / "a.wav", 2.0)
    _tone(library / "sub" / "b.flac", 11.0, seed=2)
    (library / "notes.txt").write_text("not audio")  # ignored: not an audio extension
    (library / "broken.mp3").write_bytes(b"ID3" + bytes(64))
    out = tmp_path / "vectors.npz"
    code = cli.main(["embed", str(library), "--model", str(tiny_model_dir), "--out", str(out), "--quiet"])
    assert code == 1  # one file failed
    data = np.load(out)
    assert data["vectors"].shape == (2, 512)
    assert [p.rsplit("/", 1)[-1] for p in data["paths"]] == ["a.wav", "b.flac"]
    assert str(data["fingerprint"]) == load_manifest(tiny_model_dir).fingerprint
    assert "broken.mp3" in capsys.readouterr().err


def test_cli_embed_text_and_model_info(tiny_model_dir, tmp_path, capsys):
    assert cli.main(["embed-text", "dog barking", "rain", "--model", str(tiny_model_dir)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["dog barking", "rain"]
    assert len(lines[0]["vector"]) == 512
    assert cli.main(["model-info", str(tiny_model_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["audio"]["fusion"] == "aff_2d"
    assert cli.main(["embed-text", "x", "--model", str(tmp_path)]) == 2  # not a model folder


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_every_variant_is_deterministic_in_any_batch(tiny_model_dir, tmp_path, variant):
    encoder = ClapEncoder.open(tiny_model_dir, variant=variant)
    paths = [_tone(tmp_path / f"c{i}.wav", seconds, seed=i) for i, seconds in enumerate([2.0, 10.0, 14.0, 31.0])]
    alone = np.stack([next(encoder.embed_files([p])).vector for p in paths])
    together = np.stack([r.vector for r in encoder.embed_files(paths[::-1], batch_size=4)])[::-1]
    np.testing.assert_array_equal(alone, together)
    texts = ["a dog barks", "rain on a tin roof", "bells"]
    np.testing.assert_array_equal(encoder.embed_text(texts)[1], encoder.embed_text([texts[1]])[0])
    recorded = encoder.manifest.variants[variant]
    if variant == "fp32":  # ONNX Runtime's fp32 kernels compute each row alike at any batch size
        assert recorded.audio_batch_invariant and recorded.text_batch_invariant


# ----------------------------------------------------------------------------- text batches

BATCH_TEXTS = [
    "rain",
    "a dog barks twice",
    "dog barking in the rain",
    "glass breaking loudly on a concrete floor next to an open door",
    "footsteps",
    "a long recording of a busy market with people talking, carts rolling and a distant church bell",
    "wind",
    "rain on a tin roof",
]


class _CountingSession:
    """Wraps an ONNX session to record the (batch, width) of every call."""

    def __init__(self, session):
        self.session, self.calls = session, []

    def run(self, outputs, feeds):
        self.calls.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


@pytest.mark.parametrize("model", ["clapsearch-sfx-v2", "clapsearch-sfx-v1"])
def test_text_batches_run_one_call_per_length_and_each_text_is_its_own(model):
    encoder = ClapEncoder.open(MODELS / model)
    rows = encoder.tokenizer.ids(BATCH_TEXTS)
    alone = np.stack([encoder.embed_text([t])[0] for t in BATCH_TEXTS])
    counting = encoder._text = _CountingSession(encoder._text)
    together = encoder.embed_text(BATCH_TEXTS[::-1])[::-1]
    shuffled = encoder.embed_text(BATCH_TEXTS[1::2] + BATCH_TEXTS[::2])
    widths = {len(r) for r in rows}
    if encoder.manifest.variants[encoder.variant].text_batch_invariant:
        assert sorted(w for _, w in counting.calls[: len(widths)]) == sorted(widths)
        # a text's vector does not depend on its neighbours: any two batches agree bit for bit
        np.testing.assert_array_equal(np.concatenate([together[1::2], together[::2]]), shuffled)
    else:  # a variant measured batch-dependent at export runs one text per call
        assert all(batch == 1 for batch, _ in counting.calls)
        np.testing.assert_array_equal(together, alone)
    # alone, ONNX Runtime may take a single-row kernel path: rounding-level differences at most
    assert np.abs(together - alone).max() < 1e-6


def test_int8_text_batches_share_calls_and_each_text_is_its_own(tiny_model_dir):
    """The int8 text tower quantizes each token row on its own: the export finds it batch-invariant,
    so a batch runs one call per token length (not one per text), bit-identical to each text alone."""
    recorded = load_manifest(tiny_model_dir).variants["int8"]
    # The tiny random tower is harder to quantize than RoBERTa-base (cosine 0.99999 there): measured
    # 0.9974 row-wise against 0.9923 for ONNX Runtime's per-tensor quantize_dynamic on the same
    # probes (transformers 5.25). A broken graph (the mis-broadcast scale of issue 18) gave 0.975.
    assert recorded.text_batch_invariant and recorded.text_min_cosine_to_fp32 > 0.996
    encoder = ClapEncoder.open(tiny_model_dir, variant="int8")
    alone = np.stack([encoder.embed_text([t])[0] for t in BATCH_TEXTS])
    counting = encoder._text = _CountingSession(encoder._text)
    together = encoder.embed_text(BATCH_TEXTS[::-1])[::-1]
    widths = {len(r) for r in encoder.tokenizer.ids(BATCH_TEXTS)}
    assert sorted(w for _, w in counting.calls) == sorted(widths) and len(widths) < len(BATCH_TEXTS)
    np.testing.assert_array_equal(together, alone)
