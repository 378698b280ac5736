"""Patch models (YAMNet family) through the torch-free runtime: whole-file pooling, streaming,
determinism, parity with the torch model they were exported from, and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from indexer.audio.patches import patch_count
from indexer.errors import EmptyAudioError, ManifestError
from indexer.models.encoder import ClapEncoder
from indexer.models.manifest import load_manifest
from tests.helpers import stored_vectors, tone

CONFIG = {
    "embed_dim": 521 + 16 + 8,
    "audio": {"type": "yamnet"},
    "text": {
        "type": "bert",
        "pooling": "mean",
        "max_length": 32,
        "config": {
            "vocab_size": 400,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "pad_token_id": 0,
        },
    },
    "head": {
        "type": "label_space",
        "temperature": 0.05,
        "prior_weight": 0.6,
        "branch_dim": 16,
        "embedding_dim": 8,
        "embedding_weight": 0.5,
    },
    "tokenizer_vocab_size": 400,
}


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    from training.export import write_model_folder
    from training.random_init import random_converted

    root = tmp_path_factory.mktemp("patched")
    converted = random_converted(CONFIG, root / "tok", seed=3)
    head = converted.model.audio_projection  # a fitted (random) embedding block, as label-space tuning leaves it
    head.fit_embedding_block(torch.randn(64, 1024, generator=torch.Generator().manual_seed(0)), 8, 0.5)
    write_model_folder(converted, root / "model", ship=("fp32",))  # exact float32 graphs for parity
    return converted.model, root / "model"


def _wave(seconds, sr=16_000, seed=0):
    return tone(seconds, sr, freq=(200, 3000), noise=0.05, seed=seed)


def test_manifest_describes_the_patch_model(patched):
    _, folder = patched
    manifest = load_manifest(folder)
    assert manifest.patched and manifest.audio.patch_outputs == 1545
    assert manifest.audio_frontend.patch_frames == 96 and manifest.audio_frontend.sample_rate == 16_000
    variant = manifest.variants[manifest.default_variant]
    assert variant.audio_head == "audio_head.onnx" and variant.audio_batch_invariant
    assert manifest.text.label_space is not None and len(manifest.text.label_space.labels) == 521
    assert [(p.name, p.dim, p.weight) for p in manifest.joint] == [
        ("prior", 521, 0.6),
        ("branch", 16, pytest.approx(0.4)),
        ("embedding", 8, 0.0),
    ]
    assert manifest.joint[2].audio_weight == 0.5 and manifest.joint[0].audio_weight == pytest.approx(0.3)


def test_compact_folder_ships_fp16_stored_weights_within_cosine_0999(patched, tmp_path):
    from training.export import write_model_folder
    from training.random_init import random_converted

    converted = random_converted(CONFIG, tmp_path / "tok", seed=3)
    converted.model.audio_projection.fit_embedding_block(
        torch.randn(64, 1024, generator=torch.Generator().manual_seed(0)), 8, 0.5
    )
    write_model_folder(converted, tmp_path / "compact")
    manifest = load_manifest(tmp_path / "compact")
    assert manifest.default_variant == "fp16w-fp16" and not manifest.variants["fp32"].shipped
    assert manifest.variants["fp16w-fp16"].audio_min_cosine_to_fp32 >= 0.999
    size = sum(p.stat().st_size for p in (tmp_path / "compact").glob("*.onnx"))
    full = sum(p.stat().st_size for p in patched[1].glob("*.onnx"))
    assert size < 0.7 * full
    compact, exact = ClapEncoder.open(tmp_path / "compact"), ClapEncoder.open(patched[1])
    views = [compact.views_from_waveform(_wave(s, seed=i), 16_000) for i, s in enumerate((0.5, 7.0, 30.0))]
    a, b = compact.embed_views(views), exact.embed_views(views)
    assert np.min(np.sum(a * b, axis=1)) >= 0.999
    assert np.array_equal(compact.embed_views(views[1:2])[0], a[1])


def test_runtime_equals_torch_model_for_every_length(patched):
    model, folder = patched
    encoder = ClapEncoder.open(folder, variant="fp32-fp16" if False else None)
    for seconds in (0.2, 0.975, 3.3, 61.0):
        wave = _wave(seconds)
        views = encoder.views_from_waveform(wave, 16_000)
        assert views.features.shape[1] == 96 + 48 * (patch_count(wave.size, encoder.manifest.audio_frontend) - 1)
        ours = encoder.embed_views([views])[0]
        with torch.inference_mode():
            ref = model.encode_audio(torch.from_numpy(views.features[None]), torch.zeros(1, dtype=torch.bool))[0]
        assert np.abs(ours - ref.numpy()).max() < 1e-5
        assert abs(np.linalg.norm(ours) - 1) < 1e-5


def test_vectors_are_bit_identical_alone_and_in_any_batch(patched):
    _, folder = patched
    encoder = ClapEncoder.open(folder)
    views = [encoder.views_from_waveform(_wave(s, seed=i), 16_000) for i, s in enumerate((0.5, 12.0, 150.0, 2.0))]
    together = encoder.embed_views(views)
    for i, v in enumerate(views):
        assert np.array_equal(encoder.embed_views([v])[0], together[i])
    assert np.array_equal(encoder.embed_views(views[::-1])[::-1], together)


def test_long_file_uses_all_patches_not_a_crop(patched, tmp_path):
    _, folder = patched
    encoder = ClapEncoder.open(folder)
    quiet, tone = np.zeros(16_000 * 20, np.float32), _wave(20.0)
    first = encoder.embed_waveforms([np.concatenate([tone, quiet, quiet])], 16_000)[0]
    last = encoder.embed_waveforms([np.concatenate([quiet, quiet, tone])], 16_000)[0]
    middle_only = encoder.embed_waveforms([np.concatenate([quiet, tone, quiet])], 16_000)[0]
    # The same content anywhere in a long file gives nearly the same mean; a centre crop would not.
    assert float(first @ last) > 0.99 and float(first @ middle_only) > 0.99


@pytest.mark.parametrize("kind", ["silence", "dc", "clipped", "click"])
def test_edge_signals_give_real_unit_vectors(patched, tmp_path, kind):
    _, folder = patched
    n = 16_000 * 3
    wave = {
        "silence": np.zeros(n),
        "dc": np.full(n, 0.4),
        "clipped": np.clip(_wave(3.0) * 20, -1, 1),
        "click": np.r_[np.ones(20), np.zeros(100)],
    }[kind].astype(np.float32)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, wave, 16_000)
    (item,) = ClapEncoder.open(folder).embed_files([path])
    assert item.error is None and np.isfinite(item.vector).all()
    assert abs(float(np.linalg.norm(item.vector)) - 1) < 1e-5


def test_empty_file_is_a_typed_error_not_a_vector(patched, tmp_path):
    _, folder = patched
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16_000)
    (item,) = ClapEncoder.open(folder).embed_files([path])
    assert item.vector is None and isinstance(item.error, EmptyAudioError)


def test_text_vectors_leave_the_audio_only_block_at_zero(patched):
    _, folder = patched
    encoder = ClapEncoder.open(folder)
    text = encoder.embed_text(["a dog barks"])[0]
    audio = encoder.embed_waveforms([_wave(2.0)], 16_000)[0]
    assert np.all(text[-8:] == 0) and np.abs(audio[-8:]).sum() > 0


def test_text_side_carries_the_label_space(patched):
    model, folder = patched
    encoder = ClapEncoder.open(folder)
    texts = ["dog barking", "rain on a roof", "asdfghjkl"]
    ours = encoder.embed_text(texts)
    tok = encoder.tokenizer
    with torch.inference_mode():
        for i, text in enumerate(texts):
            ids, mask = tok.encode_batch([text])
            ref = model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()
            assert float(ours[i] @ ref) > 0.999  # shipped text tower is fp16


def test_missing_head_graph_is_refused(patched, tmp_path):
    import shutil

    _, folder = patched
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "audio_head.onnx").unlink()
    with pytest.raises(ManifestError, match="audio_head"):
        load_manifest(broken)


def test_ingest_with_segments_stores_the_runtime_vectors(patched, tmp_path):
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.search import Searcher
    from indexer.settings import IndexerSettings
    from indexer.store.catalog import SegmentSpec
    from indexer.store.store import Store

    _, folder = patched
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "long.flac", _wave(31.0, seed=1), 16_000)
    sf.write(lib / "short_44k.wav", _wave(0.4, sr=44_100, seed=2), 44_100)
    store = Store.open(IndexerSettings(home=tmp_path / "home", model=folder))
    report = run_ingest(store, IngestOptions(paths=[str(lib)], segments=SegmentSpec(10, 5), workers=1))
    assert [r.kind for r in report.published] == ["files", "segments"]
    assert report.published[1].version.n_vectors == 6  # 0,5,...,20 and one flush with the end
    stored = stored_vectors(store)
    encoder = ClapEncoder.open(folder)
    for item in encoder.embed_files(sorted(stored)):
        assert np.array_equal(stored[item.path], item.vector)  # the pipeline is the runtime, bit for bit
    hits = Searcher(store, "default").search_text("a tone", 2)
    assert len(hits) == 2 and all(np.isfinite(h.score) for h in hits)
