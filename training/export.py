"""Write a model folder (manifest + ONNX towers + tokenizer) from a converted or trained model.

    write_model_folder(converted, "models/laion-630k-fusion", variants=("fp32", "int8"))

Steps, each checked:
1. export the audio and text towers (``training.towers``) to ONNX, opset 18, dynamic batch
   (and dynamic text length);
2. parity: the fp32 ONNX graphs must reproduce the eager towers (max abs <= ``parity_tol``) on
   probe inputs that include long (fused) and short clips in one batch; export fails otherwise;
3. optional variants: ``int8`` (dynamic int8 quantization of MatMul/Gemm weights) and ``fp16``;
   each variant's cost is measured as the minimum cosine of its vectors to fp32's on the probes
   and written to the manifest; ``ship`` keeps only some variants' files in the folder (the others
   stay in the manifest, hashes included, marked ``shipped: false``);
4. the tokenizer file and a manifest with hashes and provenance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from indexer.errors import ModelError
from indexer.models.manifest import AudioTower, Manifest, Variant, sha256_file
from training import towers
from training.convert import ConvertedModel
from training.models.factory import create_model
from training.rowwise_int8 import quantize_rowwise_int8
from training.towers import batch_invariant, equal_length_text_feeds, min_cosine, run_onnx


def probe_audio_inputs(converted: ConvertedModel, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features for a short, an exact-length and two long generated clips, via our front end."""
    spec = converted.frontend
    clip = spec.clip_samples / spec.sample_rate
    views = towers.probe_views(spec, (2.5, clip, 2.6 * spec.clip_samples / spec.sample_rate, 4 * clip), seed)
    return np.stack([v.features for v in views]), np.array([v.is_longer for v in views])


def _quantize_int8(src: Path, dst: Path) -> None:
    """Int8 weights (u8s8, VNNI) with activations quantized at run time.

    Text tower: one activation scale per token row (``training.rowwise_int8``), so a text's vector
    does not depend on the other texts of its batch, and a batch runs in one call per token length
    instead of one call per text.
    Audio tower: ONNX Runtime's ``quantize_dynamic`` with per-channel weight scales (no measurable
    cost there, best cosine); its per-call activation scale makes a clip batch-dependent, so the
    runtime embeds int8 clips one per call. Measured and rejected (bench/RESULTS.md): ORT
    transformer-optimizer fusions before quantizing (no gain on these graphs), MatMulNBits 8/4-bit
    weight-only (slower at 10-token queries and in batches), and quantizing the word-embedding
    Gather (smaller file, no speed gain).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    inputs = {i.name for i in onnx.load(str(src), load_external_data=False).graph.input}
    if "input_ids" in inputs:
        quantize_rowwise_int8(src, dst)
        return
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"]
    )


VARIANT_BUILDERS = {"int8": _quantize_int8, "fp16": towers.convert_fp16}
PRECISIONS = ("fp32", *VARIANT_BUILDERS)


def _precisions(variant: str) -> tuple[str, str]:
    """``int8`` -> both towers int8; ``fp32-fp16`` -> audio fp32, text fp16 (mixed variants let a
    model keep each tower at the precision that costs it nothing)."""
    audio, _, text = variant.partition("-")
    text = text or audio
    if audio not in PRECISIONS or text not in PRECISIONS:
        raise ModelError(
            f"unknown variant {variant!r}: use one of {', '.join(PRECISIONS)} or AUDIO-TEXT such as fp32-fp16"
        )
    return audio, text


def measure_variants(
    stage: Path,
    variants: tuple[str, ...],
    audio_feeds: dict,
    text_feeds: dict,
    audio_ref: np.ndarray,
    text_ref: np.ndarray,
) -> dict[str, Variant]:
    """Each variant's files (built once, shared between variants), its cosine to fp32 and batch
    invariance, on the probes; fp32 always, since every variant is measured against it."""

    def tower_file(tower: str, precision: str) -> str:
        name = f"{tower}.onnx" if precision == "fp32" else f"{tower}.{precision}.onnx"
        if not (stage / name).exists():
            VARIANT_BUILDERS[precision](stage / f"{tower}.onnx", stage / name)
        return name

    files: dict[str, Variant] = {}
    for variant in dict.fromkeys((*variants, "fp32")):
        audio_prec, text_prec = _precisions(variant)
        audio_name, text_name = tower_file("audio", audio_prec), tower_file("text", text_prec)
        audio_cos = None if audio_prec == "fp32" else min_cosine(run_onnx(stage / audio_name, audio_feeds), audio_ref)
        text_cos = None if text_prec == "fp32" else min_cosine(run_onnx(stage / text_name, text_feeds), text_ref)
        files[variant] = Variant(
            audio=audio_name,
            text=text_name,
            audio_min_cosine_to_fp32=audio_cos,
            text_min_cosine_to_fp32=text_cos,
            audio_batch_invariant=batch_invariant(stage / audio_name, audio_feeds),
            text_batch_invariant=batch_invariant(stage / text_name, equal_length_text_feeds(**text_feeds)),
            sha256={n: sha256_file(stage / n) for n in (audio_name, text_name)},
        )
    return files


def keep_shipped(
    stage: Path, files: dict[str, Variant], ship: tuple[str, ...] | None, default_variant: str | None
) -> str:
    """Mark the variants left out of the folder (measured and recorded all the same), delete the
    files only they use, and return the default variant."""
    shipped = set(files) if ship is None else set(ship)
    if not shipped <= set(files):
        raise ModelError(f"cannot ship {sorted(shipped - set(files))}: not among the variants {sorted(files)}")
    needed = {f for v in shipped for f in (files[v].audio, files[v].text)}
    for variant_name in sorted(set(files) - shipped):
        files[variant_name] = files[variant_name].model_copy(update={"shipped": False})
        for file_name in {files[variant_name].audio, files[variant_name].text} - needed:
            (stage / file_name).unlink()
    return default_variant or ("fp32" if "fp32" in shipped else sorted(shipped)[0])


def write_model_folder(
    converted: ConvertedModel,
    out_dir: str | Path,
    *,
    name: str | None = None,
    variants: tuple[str, ...] = ("fp32",),
    parity_tol: float = 1e-4,
    overwrite: bool = False,
    ship: tuple[str, ...] | None = None,
    default_variant: str | None = None,
) -> Manifest:
    """Export ``converted`` into ``out_dir`` and return its manifest. See the module docstring."""
    if converted.frontend.long_policy == "patch_mean":  # two audio graphs around the patch mean
        from training.export_patched import write_patch_model_folder

        return write_patch_model_folder(
            converted,
            out_dir,
            name=name,
            parity_tol=parity_tol,
            overwrite=overwrite,
            ship_fp16_text=ship is None or "fp32-fp16" in ship,
        )
    out = Path(out_dir)
    for variant in variants:
        _precisions(variant)  # fail before the (slow) export on a misspelt variant

    model = create_model(pretrained=converted.model, max_text_length=converted.max_text_length).eval().float()
    audio_tower, text_tower = towers.AudioEmbedder(model).eval(), towers.TextEmbedder(model).eval()
    tokenizer_file = towers.tokenizer_file_in(converted.tokenizer_dir)
    features, is_longer = probe_audio_inputs(converted)
    input_ids, attention_mask = towers.probe_tokens(tokenizer_file, converted.max_text_length)

    with towers.staged_folder(out, overwrite) as stage:
        batch = torch.export.Dim("batch")
        audio_args = (torch.from_numpy(features), torch.from_numpy(is_longer))
        text_args = (torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        towers.export_onnx(
            audio_tower,
            audio_args,
            ["input_features", "is_longer"],
            "clap_audio_embeds",
            {"input_features": {0: batch}, "is_longer": {0: batch}},
            stage / "audio.onnx",
        )
        towers.export_text(text_tower, text_args, stage / "text.onnx")

        with torch.inference_mode():
            audio_ref = audio_tower(*audio_args).numpy()
            text_ref = text_tower(*text_args).numpy()
        audio_feeds = {"input_features": features, "is_longer": is_longer}
        text_feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        audio_err = float(np.abs(run_onnx(stage / "audio.onnx", audio_feeds) - audio_ref).max())
        text_err = float(np.abs(run_onnx(stage / "text.onnx", text_feeds) - text_ref).max())
        towers.check_parity(audio_err, text_err, parity_tol)

        files = measure_variants(stage, variants, audio_feeds, text_feeds, audio_ref, text_ref)
        default_variant = keep_shipped(stage, files, ship, default_variant)
        shutil.copyfile(tokenizer_file, stage / "tokenizer.json")

        config = model.full_config()
        manifest = Manifest(
            name=name or out.name,
            embed_dim=int(config.embed_dim),
            audio_frontend=converted.frontend,
            audio=AudioTower(
                architecture=converted.audio_architecture,
                fusion="aff_2d" if config.fusion else None,
                input_channels=4 if config.fusion else 1,
                config=config.audio.model_dump(exclude={"fusion"}),
            ),
            text=towers.text_entry(converted, model, tokenizer_file),
            variants=files,
            default_variant=default_variant,
            provenance=towers.provenance(converted, "training.export.write_model_folder"),
            **towers.logit_scale_fields(model),
        )
        manifest.save(stage)
        towers.write_report(stage, audio_err, text_err, converted)
    return manifest


def converted_from_checkpoint(path: str | Path, tokenizer_dir: Path):
    """A ``ConvertedModel`` of a training checkpoint (its tokenizer written into ``tokenizer_dir``),
    ready for ``training.export.write_model_folder`` or a torch evaluation."""
    from training.checkpoint import TrainState, load_checkpoint
    from training.random_init import architecture_name

    payload = load_checkpoint(path)
    model = create_model(pretrained=payload)
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    (tokenizer_dir / "tokenizer.json").write_text(payload["tokenizer_json"])
    config = model.config
    state: TrainState = payload["state"]
    notes = [f"trained {state.step} steps ({state.samples_seen} pairs)"]
    if state.best_metric is not None:
        notes.append(f"validation metric {state.best_metric:.4f} at step {state.best_step}")
    return ConvertedModel(
        model=model,
        frontend=config.audio_frontend(),
        audio_architecture=architecture_name(config, "audio"),
        text_architecture=architecture_name(config, "text"),
        tokenizer_dir=tokenizer_dir,
        max_text_length=config.text.max_length,
        source=str(path),
        source_format="trained",
        source_sha256=sha256_file(path),
        notes=notes,
    )
