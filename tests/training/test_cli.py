"""The one-command conversions a newcomer runs, and the registry behind init-random."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from indexer import cli as indexer_cli  # noqa: E402
from indexer.models.manifest import load_manifest  # noqa: E402
from training import cli  # noqa: E402
from training.models.factory import create_model, list_models  # noqa: E402


def test_convert_laion_command(golden_dir, tmp_path, capsys):
    roberta = golden_dir / "configs" / "roberta-tiny"
    out = tmp_path / "laion-unfused"
    args = ["convert-laion", str(golden_dir / "tiny_unfused.pt"), str(out), "--tokenizer", str(roberta)]
    code = cli.main([*args, "--text-config", str(roberta / "config.json"), "--variants", "fp32"])
    assert code == 0
    manifest = load_manifest(out)
    assert manifest.provenance.source_format == "laion_clap_pt"
    assert manifest.audio_frontend.int16_roundtrip and manifest.audio_frontend.long_policy == "center_crop"
    assert "dropped" in capsys.readouterr().out  # the user sees what was left out and why
    report = json.loads((out / "export_report.json").read_text())
    assert max(report["parity_max_abs"].values()) < 1e-4
    assert (
        cli.main(["convert-laion", str(golden_dir / "tiny_unfused.pt"), str(out), "--tokenizer", str(roberta)]) == 2
    )  # exists, and no text config: a clear error, not a traceback


def test_registry_configs_all_build():
    import torch

    assert {"micro", "htsat-tiny-roberta", "cnn10-minilm", "cnn14-roberta", "cnn6-clip"} <= set(list_models())
    sizes = {}
    for name in list_models():
        with torch.device("meta"):  # shapes only: the big configs cost no memory or init time
            model = create_model(name, seed=None)
        sizes[name] = {part: sum(p.numel() for p in params) for part, params in model.parameter_groups().items()}
    # Published sizes: PANN CNN14 80.8 M (we keep its fc, drop its classifier), MiniLM-L6 22.7 M,
    # HTSAT-tiny 27.5 M (28.5 M with fusion), RoBERTa-base 124.6 M.
    assert 79e6 < sizes["cnn14-roberta"]["audio"] < 81e6
    assert 22e6 < sizes["cnn10-minilm"]["text"] < 23e6
    assert 124e6 < sizes["htsat-tiny-roberta"]["text"] < 125.5e6
    assert 27e6 < sizes["htsat-tiny-roberta"]["audio"] < 29e6


def test_init_random_and_rank_refuses_another_models_vectors(tmp_path, capsys):
    out = tmp_path / "micro"
    assert cli.main(["init-random", "micro", str(out), "--variants", "fp32"]) == 0
    manifest = load_manifest(out)
    assert manifest.provenance.source_format == "random"
    vectors = np.eye(3, 512, dtype=np.float32)
    np.savez(
        tmp_path / "ok.npz",
        vectors=vectors,
        paths=np.array(["a", "b", "c"]),
        model=manifest.name,
        fingerprint=manifest.fingerprint,
    )
    capsys.readouterr()
    assert indexer_cli.main(["rank", str(tmp_path / "ok.npz"), "rain", "--model", str(out), "--top", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # query line + top 2
    np.savez(
        tmp_path / "other.npz",
        vectors=vectors,
        paths=np.array(["a", "b", "c"]),
        model="other",
        fingerprint="0123456789abcdef",
    )
    assert indexer_cli.main(["rank", str(tmp_path / "other.npz"), "rain", "--model", str(out)]) == 2
    assert "was embedded with model 'other'" in capsys.readouterr().err


def test_a_folder_can_ship_only_its_compact_variants(tmp_path, capsys):
    import pytest

    from indexer.errors import ModelError
    from indexer.models.encoder import ClapEncoder

    out = tmp_path / "small"
    ship = "--variants fp32,int8,fp32-int8 --ship int8,fp32-int8 --default-variant int8".split()
    assert cli.main(["init-random", "micro-cnn-bert", str(out), *ship]) == 0
    manifest = load_manifest(out)
    assert manifest.default_variant == "int8" and not manifest.variants["fp32"].shipped
    mixed = manifest.variants["fp32-int8"]  # audio fp32, text int8: the audio file is shared with fp32
    assert (mixed.audio, mixed.text) == ("audio.onnx", "text.int8.onnx") and mixed.audio_min_cosine_to_fp32 is None
    assert (out / "audio.onnx").is_file() and not (out / "text.onnx").exists()
    assert manifest.variants["fp32"].sha256  # the reference stays pinned: same fingerprint as the full folder
    assert ClapEncoder.open(out).variant == "int8"
    assert ClapEncoder.open(out, variant="fp32-int8").embed_text("rain").shape == (1, 64)
    with pytest.raises(ModelError, match="no 'fp32' variant in this folder"):
        ClapEncoder.open(out, variant="fp32")
    assert cli.main(["init-random", "micro-cnn-bert", str(tmp_path / "x"), "--variants", "fp32,int4"]) == 2
