"""Initialising towers from weights on disk: plain state dicts (with a prefix, in the layout the
aisfx CNN ships), Hugging Face text folders, HF CLAP folders, and our own checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from indexer.errors import ModelError  # noqa: E402
from tests.training.toy import TOY_CONFIG, write_config, write_corpus  # noqa: E402
from training.models.audio_cnn import CnnTower  # noqa: E402
from training.models.factory import create_model, init_tower  # noqa: E402
from training.train import prepare_model, train  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402

CNN9 = {**TOY_CONFIG, "audio": {"type": "cnn", "preset": "cnn9-max", "widths": [8, 16, 32, 64]}}


def test_plain_state_dict_with_prefix_loads_every_tensor(tmp_path):
    donor = CnnTower(32, {"preset": "cnn9-max", "widths": [8, 16, 32, 64]})
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_()
    # The aisfx layout: a (state_dict, datasets) tuple, tower keys under "embedding_net.", plus
    # classifier heads that are not ours.
    state = {f"embedding_net.{k}": v for k, v in donor.state_dict().items()}
    state["fc.0.0.weight"] = torch.zeros(3, 3)
    torch.save((state, {"sfx": (0, 10)}), tmp_path / "checkpoint.pth")

    model = create_model(CNN9)
    report = init_tower(model, "audio", f"{tmp_path / 'checkpoint.pth'}:embedding_net.")
    assert report.loaded == len(donor.state_dict()) and not report.missing
    for key, tensor in donor.state_dict().items():
        assert torch.equal(model.audio.state_dict()[key], tensor), key

    with pytest.raises(ModelError, match="PATH:PREFIX"):  # forgot the prefix: nothing matches
        init_tower(create_model(CNN9), "audio", str(tmp_path / "checkpoint.pth"))
    wider = create_model({**CNN9, "audio": {**CNN9["audio"], "widths": [8, 16, 32, 128]}})
    with pytest.raises(ModelError, match="shape mismatch"):
        init_tower(wider, "audio", f"{tmp_path / 'checkpoint.pth'}:embedding_net.")


def _bert_folder(dest: Path) -> Path:
    from transformers import BertConfig, BertModel

    from training.random_init import train_tokenizer

    torch.manual_seed(5)
    BertModel(
        BertConfig(
            vocab_size=300,
            hidden_size=48,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    ).save_pretrained(dest)
    train_tokenizer(dest, vocab_size=300, style="bert")
    return dest


def test_text_init_from_an_hf_folder_brings_its_weights_and_tokenizer(tmp_path):
    corpus = write_corpus(tmp_path / "data", per_kind=2)
    folder = _bert_folder(tmp_path / "minilm-like")
    cfg = TrainConfig(
        model=str(write_config(tmp_path)),
        train_manifest=str(corpus),
        text_init=str(folder),
        out_dir=str(tmp_path / "run"),
    )
    model, tokenizer_json, notes = prepare_model(cfg, None, [])
    assert model.text.width == 48 and model.text_projection.linear1.in_features == 48  # new width, new head
    from transformers import BertModel

    reference = BertModel.from_pretrained(folder, add_pooling_layer=False)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.text.model.state_dict()[key], tensor), key
    assert tokenizer_json == (folder / "tokenizer.json").read_text()
    assert any("text:" in n for n in notes)
    # and training runs with it, recording the new text tower in the checkpoint's config
    state = train(cfg.model_copy(update={"max_steps": 2, "batch_size": 4, "workers": 0, "progress": False}))
    from training.checkpoint import load_checkpoint

    saved = json.loads(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model_config"])
    assert state.step == 2 and saved["text"]["config"]["hidden_size"] == 48


def test_whole_model_init_from_an_hf_clap_folder_then_export(tmp_path):
    """Fine-tune a (tiny) converted Hugging Face CLAP: HTSAT + fusion through our training forward,
    then the export's parity check against the trained torch model."""
    from tests.factories import save_hf_folder, tiny_clap_model
    from training.export import converted_from_checkpoint, write_model_folder

    hf = save_hf_folder(tiny_clap_model(True, vocab_size=400, seed=3), tmp_path / "hf")
    corpus = write_corpus(tmp_path / "data", per_kind=1)
    cfg = TrainConfig(
        init=str(hf),
        train_manifest=str(corpus),
        out_dir=str(tmp_path / "run"),
        max_steps=2,
        batch_size=2,
        workers=0,
        progress=False,
        lr=1e-3,
        warmup_steps=1,
    )
    model, tokenizer_json, _ = prepare_model(cfg, None, [])
    assert model.config.audio.type == "htsat" and model.config.fusion
    assert tokenizer_json == (hf / "tokenizer.json").read_text()
    assert model.config.audio_frontend().sample_rate == 48_000  # the checkpoint's own preprocessing
    train(cfg)
    converted = converted_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "tok")
    manifest = write_model_folder(converted, tmp_path / "model", variants=("fp32",))
    assert manifest.provenance.source_format == "trained" and manifest.audio.fusion == "aff_2d"
    report = json.loads((tmp_path / "model" / "export_report.json").read_text())
    assert max(report["parity_max_abs"].values()) < 1e-4

    # --init with our own checkpoint: a warm start from exactly those weights
    warm, _, _ = prepare_model(
        cfg.model_copy(update={"init": str(tmp_path / "run" / "checkpoints" / "last.pt")}), None, []
    )
    for key, tensor in converted.model.state_dict().items():
        assert torch.equal(warm.state_dict()[key], tensor), key


def test_known_public_checkpoints_name_real_configs_and_refuse_a_mismatch(tmp_path, monkeypatch):
    from indexer.errors import ModelError
    from training.models import factory

    assert {model for model, _ in factory.list_pretrained()} <= set(factory.list_models())
    fake = tmp_path / "630k-audioset-best.pt"  # a tiny checkpoint's file name: refused before any tensor
    fake.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="is a htsat-tiny-roberta checkpoint, not htsat-base-roberta"):
        create_model("htsat-base-roberta", pretrained=fake)
    monkeypatch.setattr(
        factory,
        "pretrained_table",
        lambda: {"pinned": {"kind": "clap", "file": fake.name, "model": "htsat-tiny-roberta", "sha256": "0" * 64}},
    )
    with pytest.raises(ModelError, match="not the published pinned"):
        create_model(pretrained=fake)
