"""Model folders for patch models (``long_policy: patch_mean``, the YAMNet family).

A patch model's file vector is ``head(mean over ALL patches of tower(patch))``; the runtime
streams the patches of any length of file, so the audio side is exported as two graphs:

    audio.onnx       patches (N, patch_frames, n_mels) -> patch_outputs (N, W)   one row per patch
    audio_head.onnx  pooled (B, W) -> unit embeddings (B, D)                      after the mean
    text.onnx        input_ids, attention_mask (B, L) -> unit embeddings (B, D)   label space inside

Checked before anything is written: the graphs reproduce the torch model's ``encode_audio`` /
``encode_text`` on generated clips of several lengths (max abs <= ``parity_tol``), and whether a
row is bit-identical alone and in a batch is measured into the manifest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.models.manifest import (
    AudioTower,
    JointPart,
    LabelSpace,
    Manifest,
    ScoreCalibration,
    Variant,
    sha256_file,
)
from training import towers
from training.convert import ConvertedModel
from training.models.factory import create_model
from training.towers import batch_invariant, equal_length_text_feeds, export_onnx, run_onnx


class _PatchGraph(nn.Module):
    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.tower.patch_outputs(patches)


class _HeadGraph(nn.Module):
    def __init__(self, projection: nn.Module):
        super().__init__()
        self.projection = projection

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(pooled), dim=-1)


def fp16_weights(src: Path, dst: Path, min_elements: int = 1024) -> None:
    """The same graph with its large float32 weights STORED in float16 and cast back to float32
    when the session loads (ONNX Runtime folds the Cast): half the file, float32 arithmetic, so
    rows stay batch-invariant; the cost is the fp16 rounding of the weights, measured at export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < min_elements:
            continue
        value = numpy_helper.to_array(init)
        half = numpy_helper.from_array(value.astype(np.float16), init.name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(
            helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "_to_fp32")
        )
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def probe_clips(spec, seed: int = 0) -> list[np.ndarray]:
    """Frames ``(1, T, n_mels)`` of generated clips: shorter than a patch, a few patches, long."""
    return [views.features for views in towers.probe_views(spec, (0.3, 2.2, 7.9, 31.0), seed)]


def _onnx_file_vectors(stage: Path, audio: str, head: str, clips: list[np.ndarray], spec) -> np.ndarray:
    from indexer.audio.patches import frames_to_patches

    pooled = []
    for frames in clips:
        rows = run_onnx(stage / audio, {"patches": np.ascontiguousarray(frames_to_patches(frames[0], spec))})
        pooled.append(np.add.reduce(rows, axis=0, dtype=np.float64) / rows.shape[0])
    return run_onnx(stage / head, {"pooled": np.stack(pooled).astype(np.float32)})


def keep_only(stage: Path, files: dict[str, Variant], default: str) -> None:
    """Ship the default variant alone: the files only the others use are deleted; the others stay
    in the manifest, pinned by their hashes, marked ``shipped: false``."""
    for other in set(files) - {default}:
        files[other] = files[other].model_copy(update={"shipped": False})
    keep = {n for n in (files[default].audio, files[default].audio_head, files[default].text) if n}
    for variant in files.values():
        for leftover in {variant.audio, variant.audio_head, variant.text} - keep - {None}:
            (stage / leftover).unlink(missing_ok=True)


def label_space_parts(head, encoder: str) -> tuple[LabelSpace, list[JointPart]]:
    """The manifest's label space and the blocks of the joint vector of a label-space head: the
    prior (class scores vs anchors), the trained branch, the audio-only embedding block."""
    labels = head.labels()
    label_space = LabelSpace(template=head.template, temperature=head.temperature, labels=labels, encoder=encoder)
    prior, emb = head.prior_weight, head.embedding_weight
    keep, rest = 1.0 - emb, 1.0 - prior
    parts = (  # name, dim, weight, audio_weight, description; the prior is always there
        ("prior", len(labels), prior, keep * prior, "AudioSet label space: mean class scores vs softmax over anchors"),
        ("branch", head.branch_dim, rest, keep * rest, "trained branch (tower output / text embedding -> MLP)"),
        ("embedding", head.embedding_dim, 0.0, emb, "tower embedding on its principal axes; zero in text vectors"),
    )
    joint = [
        JointPart(name=name, dim=dim, weight=weight, audio_weight=audio, description=text)
        for name, dim, weight, audio, text in parts
        if dim or name == "prior"
    ]
    return label_space, joint


def _variant(stage: Path, graphs: tuple[str, str, str], **measured) -> Variant:
    """A variant of the (audio, audio head, text) graphs in ``stage``, with their hashes."""
    audio, head, text = graphs
    return Variant(
        audio=audio, audio_head=head, text=text, sha256={n: sha256_file(stage / n) for n in graphs}, **measured
    )


def add_fp16_variants(
    stage: Path,
    files: dict[str, Variant],
    clips: list[np.ndarray],
    spec,
    patch_feeds: dict,
    text_feeds: dict,
    text_ref: np.ndarray,
    ship_fp16_text: bool,
) -> tuple[str, float, float]:
    """Measure ``fp32-fp16`` (text tower in fp16) and ``fp16w-fp16`` (audio weights stored in fp16
    too) against fp32; returns the variant to ship and the two costs (min cosines to fp32)."""
    towers.convert_fp16(stage / "text.onnx", stage / "text.fp16.onnx")
    fp16_cos = towers.min_cosine(run_onnx(stage / "text.fp16.onnx", text_feeds), text_ref)
    fp16_ok = ship_fp16_text and fp16_cos >= 0.999
    files["fp32-fp16"] = _variant(
        stage,
        ("audio.onnx", "audio_head.onnx", "text.fp16.onnx"),
        text_min_cosine_to_fp32=fp16_cos,
        audio_batch_invariant=files["fp32"].audio_batch_invariant,
        text_batch_invariant=batch_invariant(stage / "text.fp16.onnx", equal_length_text_feeds(**text_feeds)),
        shipped=fp16_ok,
    )
    # Audio weights stored in fp16 (float32 arithmetic): shipped with the fp16 text tower when
    # the file vectors stay at cosine >= 0.999 to fp32 and rows stay batch-invariant.
    fp16_weights(stage / "audio.onnx", stage / "audio.fp16w.onnx")
    fp16_weights(stage / "audio_head.onnx", stage / "audio_head.fp16w.onnx")
    full = _onnx_file_vectors(stage, "audio.onnx", "audio_head.onnx", clips, spec)
    small = _onnx_file_vectors(stage, "audio.fp16w.onnx", "audio_head.fp16w.onnx", clips, spec)
    audio_cos = towers.min_cosine(small, full)
    small_invariant = batch_invariant(stage / "audio.fp16w.onnx", patch_feeds)
    compact_ok = fp16_ok and audio_cos >= 0.999 and small_invariant
    files["fp16w-fp16"] = _variant(
        stage,
        ("audio.fp16w.onnx", "audio_head.fp16w.onnx", "text.fp16.onnx"),
        audio_min_cosine_to_fp32=audio_cos,
        text_min_cosine_to_fp32=fp16_cos,
        audio_batch_invariant=small_invariant,
        text_batch_invariant=files["fp32-fp16"].text_batch_invariant,
        shipped=compact_ok,
    )
    default = "fp16w-fp16" if compact_ok else "fp32-fp16" if fp16_ok else "fp32"
    return default, fp16_cos, audio_cos


def write_patch_model_folder(
    converted: ConvertedModel,
    out_dir: str | Path,
    *,
    name: str | None = None,
    ship_fp16_text: bool = True,
    parity_tol: float = 1e-4,
    overwrite: bool = False,
) -> Manifest:
    """Export a patch model (YAMNet tower) into ``out_dir``; variants ``fp32`` and ``fp32-fp16``
    (text tower in fp16), shipping the latter only when its cosine to fp32 is >= 0.999."""
    from indexer.audio.patches import frames_to_patches

    out = Path(out_dir)
    spec = converted.frontend
    model = create_model(pretrained=converted.model, max_text_length=converted.max_text_length).eval().float()
    text_tower = towers.TextEmbedder(model).eval()
    tokenizer_file = towers.tokenizer_file_in(converted.tokenizer_dir)
    clips = probe_clips(spec)
    patches = np.concatenate([frames_to_patches(c[0], spec) for c in clips])
    input_ids, attention_mask = towers.probe_tokens(tokenizer_file, converted.max_text_length)
    width = int(model.audio.width)

    with towers.staged_folder(out, overwrite) as stage:
        batch = torch.export.Dim("batch")
        export_onnx(
            _PatchGraph(model.audio).eval(),
            (torch.from_numpy(np.ascontiguousarray(patches)),),
            ["patches"],
            "patch_outputs",
            {"patches": {0: batch}},
            stage / "audio.onnx",
        )
        export_onnx(
            _HeadGraph(model.audio_projection).eval(),
            (torch.zeros(3, width),),
            ["pooled"],
            "clap_audio_embeds",
            {"pooled": {0: batch}},
            stage / "audio_head.onnx",
        )
        text_args = (torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        towers.export_text(text_tower, text_args, stage / "text.onnx")

        with torch.inference_mode():
            audio_ref = torch.cat(
                [model.encode_audio(torch.from_numpy(c[None]), torch.zeros(1, dtype=torch.bool)) for c in clips]
            ).numpy()
            text_ref = text_tower(*text_args).numpy()
        audio_err = float(
            np.abs(_onnx_file_vectors(stage, "audio.onnx", "audio_head.onnx", clips, spec) - audio_ref).max()
        )
        text_feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        text_err = float(np.abs(run_onnx(stage / "text.onnx", text_feeds) - text_ref).max())
        towers.check_parity(audio_err, text_err, parity_tol)
        patch_feeds = {"patches": np.ascontiguousarray(patches[:9])}
        audio_invariant = batch_invariant(stage / "audio.onnx", patch_feeds)
        text_invariant = batch_invariant(stage / "text.onnx", equal_length_text_feeds(**text_feeds))
        graphs = ("audio.onnx", "audio_head.onnx", "text.onnx")
        files = {
            "fp32": _variant(stage, graphs, audio_batch_invariant=audio_invariant, text_batch_invariant=text_invariant)
        }
        default, fp16_cos, audio_cos = add_fp16_variants(
            stage, files, clips, spec, patch_feeds, text_feeds, text_ref, ship_fp16_text
        )
        keep_only(stage, files, default)
        shutil.copyfile(tokenizer_file, stage / "tokenizer.json")

        config = model.full_config()
        head = config.head
        label_space, joint = label_space_parts(head, converted.text_architecture) if head else (None, [])
        manifest = Manifest(
            name=name or out.name,
            embed_dim=int(config.embed_dim),
            audio_frontend=spec,
            audio=AudioTower(
                architecture=converted.audio_architecture,
                input_channels=1,
                config=config.audio.model_dump(exclude={"fusion"}),
                patch_outputs=width,
            ),
            text=towers.text_entry(converted, model, tokenizer_file, label_space=label_space),
            variants=files,
            default_variant=default,
            provenance=towers.provenance(converted, "training.export_patched.write_patch_model_folder"),
            **towers.logit_scale_fields(model),
            joint=joint,
            score_calibration=ScoreCalibration(**head.calibration) if head and head.calibration else None,
        )
        manifest.save(stage)
        towers.write_report(
            stage,
            audio_err,
            text_err,
            converted,
            text_fp16_min_cosine=fp16_cos,
            audio_fp16_weights_min_cosine=audio_cos,
        )
    return manifest
