"""Converters: laion_clap ``.pt`` and Hugging Face folders -> ClapModel.

Two kinds of evidence: golden embeddings that laion_clap 1.1.7 itself produced for two tiny
random-weight checkpoints (``shared/data/laion-golden``), and exact round trips of random tiny
models through both on-disk layouts, with every LayerNorm/BatchNorm tensor randomised so that a
dropped or mis-mapped tensor changes the result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from indexer.errors import ModelError  # noqa: E402
from tests.conftest import GOLDEN as GOLDEN_DIR  # noqa: E402  (honours CLAPSEARCH_GOLDEN_DIR)
from tests.factories import CAPTIONS, save_hf_folder, tiny_clap_model  # noqa: E402
from training.convert.hf import feature_extractor_settings, load_hf_folder  # noqa: E402
from training.convert.laion import detect_audio_config, load_laion_checkpoint  # noqa: E402
from training.convert.layout import hf_to_laion, laion_to_hf  # noqa: E402

CLIPS = ("clip_03s", "clip_10s", "clip_10s_plus240", "clip_25s", "clip_61s")
TOL = 1e-4


def golden() -> Path:
    """The shared golden folder (next to the repository checkout), or skip."""
    if not (GOLDEN_DIR / "index.json").is_file():
        pytest.skip(f"laion golden fixtures not found at {GOLDEN_DIR} (set CLAPSEARCH_GOLDEN_DIR)")
    return GOLDEN_DIR


@pytest.fixture(scope="module")
def golden_models() -> dict[str, object]:
    g = golden()
    tok = g / "configs" / "roberta-tiny"
    return {
        name: load_laion_checkpoint(g / f"tiny_{name}.pt", text_config=tok / "config.json", tokenizer_dir=tok)
        for name in ("fused", "unfused")
    }


# ---------------------------------------------------------------- golden: laion_clap's own outputs


def test_golden_fused_audio(golden_models):
    g = golden()
    conv = golden_models["fused"]
    mel = torch.from_numpy(np.stack([np.load(g / "expected" / "mel_fusion" / f"mel_fusion_{c}.npy") for c in CLIPS]))
    longer = torch.from_numpy(np.load(g / "expected" / "longer_fused.npy")).reshape(5, 1)
    assert mel.shape == (5, 4, 1001, 64) and longer.sum() == 2  # the 25 s and 61 s clips
    with torch.inference_mode():
        got = conv.model.get_audio_features(input_features=mel, is_longer=longer).pooler_output.numpy()
    diff = np.abs(got - np.load(g / "expected" / "audio_fused.npy")).max()
    assert diff < TOL, f"fused audio max abs diff {diff:.3g}"


@pytest.mark.parametrize("name", ["fused", "unfused"])
def test_golden_text(golden_models, name):
    g = golden()
    ids = torch.from_numpy(np.load(g / "expected" / "text_input_ids.npy"))
    mask = torch.from_numpy(np.load(g / "expected" / "text_attention_mask.npy"))
    with torch.inference_mode():
        got = golden_models[name].model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.numpy()
    diff = np.abs(got - np.load(g / "expected" / f"text_{name}.npy")).max()
    assert diff < TOL, f"{name} text max abs diff {diff:.3g}"


def _laion_unfused_features(path: Path) -> np.ndarray:
    """laion_clap's non-fusion input for one file, with the fixtures' centre crop for long clips."""
    import soundfile as sf
    from transformers import ClapFeatureExtractor

    x, sr = sf.read(path, dtype="float32")
    assert sr == 48_000 and x.ndim == 1
    x = ((np.clip(x, -1, 1) * 32767).astype(np.int16) / 32767).astype(np.float32)
    n = 480_000
    if len(x) < n:
        x = np.tile(x, n // len(x))
        x = np.pad(x, (0, n - len(x)))
    elif len(x) > n:
        start = (len(x) - n) // 2
        x = x[start : start + n]
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14_000, truncation="rand_trunc", padding="repeatpad")
    return fe(x, sampling_rate=48_000, return_tensors="np")["input_features"][0]  # (1, 1001, 64)


def test_golden_unfused_audio(golden_models):
    g = golden()
    rows = json.loads((g / "index.json").read_text())["audio_rows"]
    feats = torch.from_numpy(np.stack([_laion_unfused_features(g / r["file"]) for r in rows]).astype(np.float32))
    assert feats.shape == (5, 1, 1001, 64)
    with torch.inference_mode():
        got = golden_models["unfused"].model.get_audio_features(input_features=feats).pooler_output.numpy()
    diff = np.abs(got - np.load(g / "expected" / "audio_unfused.npy")).max()
    assert diff < TOL, f"unfused audio max abs diff {diff:.3g}"


def test_golden_detection_and_frontend(golden_models):
    fused, unfused = golden_models["fused"], golden_models["unfused"]
    for conv in (fused, unfused):
        a = conv.model.config.audio_config
        assert (a.patch_embeds_hidden_size, list(a.depths), list(a.num_attention_heads)) == (
            16,
            [1, 1, 2, 1],
            [1, 2, 4, 8],
        )
        assert (a.window_size, a.spec_size, a.hidden_size) == (8, 256, 128)
        t = conv.model.config.text_config
        assert (t.hidden_size, t.num_attention_heads, t.layer_norm_eps, t.vocab_size) == (
            32,
            2,
            1e-5,
            2048,
        )
        assert conv.audio_architecture == "htsat-custom" and conv.max_text_length == 77
        assert conv.source_format == "laion_clap_pt" and len(conv.source_sha256) == 64
        assert conv.frontend.int16_roundtrip and conv.frontend.f_min == 50 and conv.frontend.f_max == 14_000
        assert any("audio_transform" in n for n in conv.notes) and any("position_ids" in n for n in conv.notes)
        assert not conv.model.training
    assert fused.model.config.audio_config.enable_fusion and fused.model.config.audio_config.fusion_type == "aff_2d"
    assert (fused.frontend.mel_scale, fused.frontend.mel_norm, fused.frontend.long_policy) == (
        "htk",
        None,
        "fusion",
    )
    assert not unfused.model.config.audio_config.enable_fusion
    assert (
        unfused.frontend.mel_scale,
        unfused.frontend.mel_norm,
        unfused.frontend.long_policy,
    ) == ("slaney", "slaney", "center_crop")


def test_golden_without_text_config_needs_heads():
    g = golden()
    # width 32 is not a multiple of 64, so heads cannot be assumed: a clear error, not a guess
    with pytest.raises(ModelError, match="attention heads"):
        load_laion_checkpoint(g / "tiny_unfused.pt", tokenizer_dir=g / "configs" / "roberta-tiny")


def test_laion_needs_tokenizer_dir():
    with pytest.raises(ModelError, match="tokenizer_dir"):
        load_laion_checkpoint("/nonexistent.pt")


# ---------------------------------------------------------------- round trips of random tiny models


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def _tokenizer_files(dest: Path) -> Path:
    g = golden()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(g / "configs" / "roberta-tiny" / name, dest / name)
    return dest


def _save_laion(model, path: Path, extra: dict | None = None, drop: str | None = None) -> Path:
    sd = hf_to_laion(model.state_dict())
    sd["text_branch.embeddings.position_ids"] = torch.arange(514).unsqueeze(0)
    sd.update(extra or {})
    if drop:
        del sd[drop]
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    return path


def _transformers_bank(scale: str, norm: str | None) -> torch.Tensor:
    """transformers' mel bank for the LAION front end: an independent reference to our own."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=50,
        max_frequency=14_000,
        sampling_rate=48_000,
        norm=norm,
        mel_scale=scale,
    )
    return torch.from_numpy(bank.astype(np.float32))


def _slaney_melw() -> torch.Tensor:
    return _transformers_bank("slaney", "slaney")


@pytest.mark.parametrize("fusion", [False, True])
def test_hf_folder_round_trip(tmp_path, fusion):
    model = tiny_clap_model(fusion)
    conv = load_hf_folder(_tokenizer_files(_hf_folder(tmp_path, fusion, model)))
    _assert_same_state(model, conv.model)
    assert not conv.model.training and conv.source_format == "hf_clap" and len(conv.source_sha256) == 64
    fe = conv.frontend
    assert (
        fe.sample_rate,
        fe.clip_samples,
        fe.n_fft,
        fe.hop_length,
        fe.n_mels,
        fe.f_min,
        fe.f_max,
    ) == (48_000, 480_000, 1024, 480, 64, 50.0, 14_000.0)
    assert not fe.int16_roundtrip and fe.log.top_db is None
    expect = ("htk", None, "fusion") if fusion else ("slaney", "slaney", "center_crop")
    assert (fe.mel_scale, fe.mel_norm, fe.long_policy) == expect
    assert conv.tokenizer_dir == tmp_path and conv.max_text_length == 77
    assert conv.audio_architecture == "htsat-custom"
    assert not any("frequency_min" in n for n in conv.notes)


@pytest.mark.parametrize("fusion", [False, True])
def test_laion_layout_round_trip(tmp_path, fusion):
    model = tiny_clap_model(fusion, seed=10)
    extra = {
        "audio_branch.layers.2.blocks.1.attn_mask": torch.zeros(4, 64, 64),
        "audio_transform.sequential.0.weight": torch.zeros(512, 512),
    }
    if not fusion:
        extra["audio_branch.logmel_extractor.melW"] = _slaney_melw()
    path = _save_laion(model, tmp_path / "m.pt", extra)
    tok = _tokenizer_files(tmp_path)
    conv = load_laion_checkpoint(
        path, text_config={"num_attention_heads": 2, "layer_norm_eps": 1e-5}, tokenizer_dir=tok
    )
    _assert_same_state(model, conv.model)
    assert conv.model.config.audio_config.enable_fusion is fusion
    assert conv.frontend.long_policy == ("fusion" if fusion else "center_crop")
    assert any("attn_mask" in n for n in conv.notes) and any("audio_transform" in n for n in conv.notes)
    assert any("melW matches" in n for n in conv.notes) != fusion


def test_layout_functions_are_inverse():
    sd = tiny_clap_model(True, seed=3).state_dict()
    back = laion_to_hf(hf_to_laion(sd))
    assert set(back) == set(sd) - {
        "text_model.embeddings.position_ids",
        "text_model.embeddings.token_type_ids",
    }
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_laion_missing_text_config_infers_heads(tmp_path):
    model = tiny_clap_model(False, text_hidden=128, text_heads=2, seed=20)
    path = _save_laion(model, tmp_path / "m.pt")
    conv = load_laion_checkpoint(path, tokenizer_dir=_tokenizer_files(tmp_path))
    t = conv.model.config.text_config
    assert (t.num_attention_heads, t.layer_norm_eps, t.pad_token_id) == (128 // 64, 1e-5, 1)
    assert any("head size 64" in n for n in conv.notes)
    _assert_same_state(model, conv.model)


def test_laion_missing_key_is_an_error(tmp_path):
    path = _save_laion(tiny_clap_model(False), tmp_path / "m.pt", drop="audio_branch.layers.2.blocks.1.norm2.bias")
    with pytest.raises(ModelError, match="missing.*layernorm_after.bias"):
        load_laion_checkpoint(path, text_config={"num_attention_heads": 2}, tokenizer_dir=_tokenizer_files(tmp_path))


@pytest.mark.parametrize(
    "key",
    [
        "audio_branch.layers.0.blocks.0.attn.extra_scale",
        "text_branch.extra.weight",
        "surprise.weight",
    ],
)
def test_laion_unknown_key_is_an_error(tmp_path, key):
    path = _save_laion(tiny_clap_model(False), tmp_path / "m.pt", extra={key: torch.zeros(3)})
    with pytest.raises(ModelError, match="unexpected|unknown"):
        load_laion_checkpoint(path, text_config={"num_attention_heads": 2}, tokenizer_dir=_tokenizer_files(tmp_path))


def test_laion_wrong_mel_bank_is_an_error(tmp_path):
    extra = {"audio_branch.logmel_extractor.melW": _transformers_bank("htk", None)}
    path = _save_laion(tiny_clap_model(False), tmp_path / "m.pt", extra=extra)
    with pytest.raises(ModelError, match="mel matrix"):
        load_laion_checkpoint(path, text_config={"num_attention_heads": 2}, tokenizer_dir=_tokenizer_files(tmp_path))


def test_laion_text_config_disagreeing_with_weights_is_an_error(tmp_path):
    path = _save_laion(tiny_clap_model(False), tmp_path / "m.pt")
    with pytest.raises(ModelError, match="hidden_size"):
        load_laion_checkpoint(
            path,
            text_config={"num_attention_heads": 2, "hidden_size": 768},
            tokenizer_dir=_tokenizer_files(tmp_path),
        )


# ---------------------------------------------------------------- detection from shapes only


def _fake_htsat(embed: int, depths: list[int], heads: list[int], fusion: bool = False) -> dict:
    """Correctly named and shaped laion audio tensors on the meta device (no memory, no model)."""
    meta = dict(device="meta")
    sd = {
        "audio_branch.patch_embed.proj.weight": torch.empty(embed, 1, 4, 4, **meta),
        "audio_branch.patch_embed.norm.weight": torch.empty(embed, **meta),
        "audio_branch.bn0.weight": torch.empty(64, **meta),
    }
    for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        dim = embed * 2**i
        for j in range(depth):
            pre = f"audio_branch.layers.{i}.blocks.{j}."
            sd[pre + "attn.relative_position_bias_table"] = torch.empty(225, h, **meta)
            sd[pre + "attn.qkv.weight"] = torch.empty(3 * dim, dim, **meta)
            sd[pre + "attn.qkv.bias"] = torch.empty(3 * dim, **meta)
            sd[pre + "mlp.fc1.weight"] = torch.empty(4 * dim, dim, **meta)
            if j % 2 and 64 // 2**i > 8:
                sd[pre + "attn_mask"] = torch.empty((64 // 2**i // 8) ** 2, 64, 64, **meta)
    final = embed * 2 ** (len(depths) - 1)
    sd["audio_branch.norm.weight"] = torch.empty(final, **meta)
    sd["audio_projection.0.weight"] = torch.empty(512, final, **meta)
    if fusion:
        sd["audio_branch.patch_embed.mel_conv2d.weight"] = torch.empty(embed, 1, 4, 12, **meta)
        sd["audio_branch.patch_embed.fusion_model.local_att.0.weight"] = torch.empty(embed // 4, embed, 1, 1, **meta)
    return sd


@pytest.mark.parametrize(
    ("embed", "depths", "heads", "name", "width"),
    [
        (96, [2, 2, 6, 2], [4, 8, 16, 32], "htsat-tiny", 768),
        (128, [2, 2, 12, 2], [4, 8, 16, 32], "htsat-base", 1024),
        (16, [1, 1, 2, 1], [1, 2, 4, 8], "htsat-custom", 128),
    ],
)
@pytest.mark.parametrize("fusion", [False, True])
def test_detect_audio_architecture(embed, depths, heads, name, width, fusion):
    det = detect_audio_config(_fake_htsat(embed, depths, heads, fusion))
    assert det.architecture == name and det.fusion is fusion
    c = det.config
    assert (c["hidden_size"], c["depths"], c["num_attention_heads"]) == (width, depths, heads)
    assert (c["window_size"], c["spec_size"], c["patch_embeds_hidden_size"], c["mlp_ratio"]) == (
        8,
        256,
        embed,
        4.0,
    )
    assert c["enable_fusion"] is fusion and c["fusion_type"] == ("aff_2d" if fusion else None)
    assert c["projection_dim"] == 512 and c["qkv_bias"] and c["enable_patch_layer_norm"]


def test_detect_rejects_other_fusion_types():
    sd = _fake_htsat(96, [2, 2, 6, 2], [4, 8, 16, 32])
    sd["audio_branch.patch_embed.mel_conv2d.weight"] = torch.empty(96, 1, 4, 12, device="meta")  # daf_2d: no AFF
    with pytest.raises(ModelError, match="aff_2d"):
        detect_audio_config(sd)


# ---------------------------------------------------------------- Hugging Face folder specifics


def _hf_folder(tmp_path: Path, fusion: bool = False, model=None, **fe_kwargs) -> Path:
    """``model`` (a tiny random one by default) and its feature extractor in the Hugging Face
    layout, without a tokenizer: the tests add the one they need."""
    from transformers import ClapFeatureExtractor

    (model or tiny_clap_model(fusion, seed=30)).save_pretrained(tmp_path)
    kwargs = dict(frequency_min=50, frequency_max=14_000, truncation="fusion" if fusion else "rand_trunc")
    kwargs.update(fe_kwargs)
    ClapFeatureExtractor(**kwargs).save_pretrained(tmp_path)
    return tmp_path


def test_hf_padding_must_be_repeatpad(tmp_path):
    folder = _tokenizer_files(_hf_folder(tmp_path, padding="pad"))
    with pytest.raises(ModelError, match="padding"):
        load_hf_folder(folder)


def test_hf_frequency_min_zero_is_followed_with_a_note(tmp_path):
    folder = _tokenizer_files(_hf_folder(tmp_path, frequency_min=0, top_db=80))
    conv = load_hf_folder(folder)
    assert conv.frontend.f_min == 0 and conv.frontend.log.top_db == 80
    assert any("frequency_min is 0" in n for n in conv.notes)


def test_hf_missing_weight_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _tokenizer_files(_hf_folder(tmp_path))
    sd = load_file(folder / "model.safetensors")
    del sd["audio_model.audio_encoder.layers.0.blocks.0.layernorm_after.weight"]
    save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match="layernorm_after"):
        load_hf_folder(folder)


def test_hf_slow_tokenizer_files_become_tokenizer_json(tmp_path):
    g = golden()
    folder = _hf_folder(tmp_path)
    tok = json.loads((g / "configs" / "roberta-tiny" / "tokenizer.json").read_text())
    (folder / "vocab.json").write_text(json.dumps(tok["model"]["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    shutil.copy(g / "configs" / "roberta-tiny" / "tokenizer_config.json", folder / "tokenizer_config.json")
    conv = load_hf_folder(folder)
    assert conv.tokenizer_dir != folder and (conv.tokenizer_dir / "tokenizer.json").is_file()
    assert not (folder / "tokenizer.json").exists()  # the user's folder is not written to

    from tokenizers import Tokenizer

    built = Tokenizer.from_file(str(conv.tokenizer_dir / "tokenizer.json"))
    built.enable_padding(pad_id=1, pad_token="<pad>", length=77)
    built.enable_truncation(77)
    texts = [r["text"] for r in json.loads((g / "index.json").read_text())["text_rows"]]
    ids = np.array([e.ids for e in built.encode_batch(texts)])
    shutil.rmtree(conv.tokenizer_dir)
    np.testing.assert_array_equal(ids, np.load(g / "expected" / "text_input_ids.npy"))


# ---------------------------------------------------------------- front-end settings: both layouts


def _save_with_processor(model, dest: Path, tokenizer_dir: Path, **fe_kwargs) -> Path:
    """``model`` saved as the installed transformers saves a whole CLAP checkpoint: the model plus a
    ``ClapProcessor`` (5.x: ``processor_config.json`` with the settings nested, no
    ``preprocessor_config.json``)."""
    from transformers import ClapFeatureExtractor, ClapProcessor, RobertaTokenizerFast

    model.save_pretrained(dest)
    tokenizer = RobertaTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"))
    extractor = ClapFeatureExtractor(**fe_kwargs)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(dest)
    return dest


def _embeddings(conv, fusion: bool) -> tuple[np.ndarray, np.ndarray]:
    """Audio embeddings of fixed features and text embeddings through the folder's own tokenizer."""
    from indexer.text import TextTokenizer

    gen = torch.Generator().manual_seed(5)
    mel = torch.randn(2, 4 if fusion else 1, 1001, 64, generator=gen)
    extra = {"is_longer": torch.tensor([[False], [True]])} if fusion else {}
    tok = TextTokenizer(conv.tokenizer_dir / "tokenizer.json", max_length=conv.max_text_length)
    ids, mask = tok.encode_batch(CAPTIONS)
    with torch.inference_mode():
        audio = conv.model.get_audio_features(input_features=mel, **extra).pooler_output.numpy()
        text = conv.model.get_text_features(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).pooler_output.numpy()
    return audio, text


@pytest.mark.parametrize("fusion", [False, True])
def test_hf_processor_config_layout_matches_legacy(tmp_path, fusion):
    model = tiny_clap_model(fusion, seed=40)
    fe_kwargs = dict(frequency_min=50, frequency_max=14_000, truncation="fusion" if fusion else "rand_trunc")
    legacy = save_hf_folder(model, tmp_path / "legacy", **fe_kwargs)
    new = _save_with_processor(model, tmp_path / "new", legacy, **fe_kwargs)
    if int(transformers.__version__.split(".")[0]) >= 5:  # the layout this test exists for
        assert not (new / "preprocessor_config.json").exists()
        nested = json.loads((new / "processor_config.json").read_text())["feature_extractor"]
        assert nested["feature_extractor_type"] == "ClapFeatureExtractor"

    old_conv, new_conv = load_hf_folder(legacy), load_hf_folder(new)
    assert new_conv.frontend == old_conv.frontend
    fe = new_conv.frontend
    assert (fe.sample_rate, fe.n_mels, fe.f_min, fe.f_max) == (48_000, 64, 50.0, 14_000.0)
    assert fe.long_policy == ("fusion" if fusion else "center_crop")
    assert new_conv.model.config.audio_config.enable_fusion is fusion
    _assert_same_state(old_conv.model, new_conv.model)
    for got, want in zip(_embeddings(new_conv, fusion), _embeddings(old_conv, fusion), strict=True):
        np.testing.assert_array_equal(got, want)


def test_hf_nested_settings_win_over_a_stale_preprocessor_config(tmp_path):
    # transformers reads the nested settings first; so must we, and say the legacy file is ignored
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"frequency_min": 0}))
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"feature_extractor": {"frequency_min": 50}, "processor_class": "ClapProcessor"})
    )
    notes: list[str] = []
    pre, source = feature_extractor_settings(tmp_path, notes)
    assert pre == {"frequency_min": 50} and source.startswith("processor_config.json")
    assert any("preprocessor_config.json differs" in n for n in notes)


@pytest.mark.parametrize("processor_config", [None, {"processor_class": "ClapProcessor"}])
def test_hf_without_feature_extractor_settings_is_an_error(tmp_path, processor_config):
    folder = save_hf_folder(tiny_clap_model(False, seed=30), tmp_path)
    (folder / "preprocessor_config.json").unlink()
    if processor_config is not None:
        (folder / "processor_config.json").write_text(json.dumps(processor_config))
    with pytest.raises(ModelError, match=r"processor_config\.json.*preprocessor_config\.json"):
        load_hf_folder(folder)
