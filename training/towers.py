"""Export-ready CLAP towers, and the ONNX plumbing both exporters (``training.export`` and
``training.export_patched``) share: export, run, parity and batch-invariance probes, tokenizer checks.

``AudioEmbedder(model)`` and ``TextEmbedder(model)`` accept a trainable
:class:`~training.models.clap.ClapTrainModel` or a transformers ``ClapModel`` (what the checkpoint
converters return; it is wrapped without copying) and run ``encode_audio`` / ``encode_text``: the
exact forward used in training, projection and L2 normalisation included, so the runtime gets
final vectors.

Shapes: audio ``input_features`` (B, C, T, F) float32 (C=4 fusion, 1 otherwise) and
``is_longer`` (B,) bool -> (B, D). Text ``input_ids``/``attention_mask`` (B, L) int64 -> (B, D).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from indexer.errors import ModelError
from indexer.models.manifest import Provenance, TextTower
from training.models.factory import create_model


class AudioEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = create_model(pretrained=model)

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor) -> torch.Tensor:
        return self.model.encode_audio(input_features, is_longer)


class TextEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = create_model(pretrained=model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


OPSET = 18
PROBE_CAPTIONS = [
    "a dog barks",
    "rain falling on a tin roof",
    "a man speaks while cars pass by in the distance",
    "This is a sound of church bells.",
    "glass breaking",
]


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def probe_views(spec, seconds: tuple[float, ...], seed: int = 0) -> list:
    """Serving views of generated probe clips, one per duration: a random tone plus noise under a
    level ramp (so a long clip's fused views differ from each other)."""
    from indexer.audio.clip import waveform_views

    rng, sr, views = np.random.default_rng(seed), spec.sample_rate, []
    for length in seconds:
        t = np.arange(int(length * sr)) / sr
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(t.size)
        views.append(waveform_views((wave * np.linspace(0.2, 1.0, t.size)).astype(np.float32), spec))
    return views


def probe_tokens(tokenizer_file: Path, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    from indexer.text import TextTokenizer

    tok = TextTokenizer(tokenizer_file, max_length=max_length)
    return tok.encode_batch(PROBE_CAPTIONS)


def export_onnx(module: torch.nn.Module, args: tuple, names: list[str], output: str, dynamic: dict, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=[output],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=dynamic,
            external_data=False,
            verbose=False,
        )


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # constant-folding notices are noise here
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def batch_invariant(path: Path, feeds: dict[str, np.ndarray]) -> bool:
    """True when every row of a batch equals, bit for bit, that row run alone."""
    together = run_onnx(path, feeds)
    rows = next(iter(feeds.values())).shape[0]
    return all(
        np.array_equal(together[i], run_onnx(path, {k: v[i : i + 1] for k, v in feeds.items()})[0]) for i in range(rows)
    )


def equal_length_text_feeds(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Probe rows cut to the shortest one: the runtime only ever batches texts of equal length."""
    shortest = int(attention_mask.sum(axis=1).min())
    return {"input_ids": input_ids[:, :shortest].copy(), "attention_mask": np.ones_like(input_ids[:, :shortest])}


def convert_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def pad_token_id(tokenizer_file: Path, fallback: int | None) -> int:
    """The tokenizer's own padding token (what batches are padded with), else the model's."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    padding = tok.padding
    if padding and padding.get("pad_id") is not None and padding.get("pad_token") in tok.get_vocab():
        return int(padding["pad_id"])
    for token in ("<pad>", "[PAD]", "<|endoftext|>"):
        found = tok.token_to_id(token)
        if found is not None:
            return int(found)
    if fallback is None:
        raise ModelError(f"{tokenizer_file}: no padding token found and the model names none")
    return int(fallback)


def tokenizer_file_in(folder: Path) -> Path:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{folder}: no tokenizer.json (convert vocab.json + merges.txt with transformers first)")
    return path


# ----------------------------------------------------------------------------- model folders
@contextmanager
def staged_folder(out: Path, overwrite: bool):
    """A private staging folder beside ``out`` that becomes ``out`` only when the block succeeds:
    a failed parity check never leaves half a model folder behind."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ModelError(f"{out} exists and is not empty (pass overwrite=True)")
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        stage = Path(tmp)
        yield stage
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        stage.chmod(0o755)  # TemporaryDirectory creates it private
        shutil.move(str(stage), str(out))
        stage.mkdir()  # TemporaryDirectory cleanup expects it


def export_text(text_tower: nn.Module, text_args: tuple, path: Path) -> None:
    """The text tower with a dynamic batch and text length."""
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    export_onnx(
        text_tower,
        text_args,
        ["input_ids", "attention_mask"],
        "clap_text_embeds",
        {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
        path,
    )


def check_parity(audio_err: float, text_err: float, tol: float) -> None:
    if audio_err > tol or text_err > tol:
        raise ModelError(
            f"ONNX export does not reproduce the torch model: audio max|diff| {audio_err:.2e}, "
            f"text {text_err:.2e} (tolerance {tol:.0e})"
        )


def text_entry(converted, model, tokenizer_file: Path, **extra) -> TextTower:
    """The manifest's text tower: architecture, length, padding token and transformers config."""
    config = model.full_config()
    return TextTower(
        architecture=converted.text_architecture,
        max_length=converted.max_text_length,
        pad_token_id=pad_token_id(tokenizer_file, model.text.model.config.pad_token_id),
        config={"pooling": config.text.resolved_pooling, **config.text.config},
        **extra,
    )


def write_report(stage: Path, audio_err: float, text_err: float, converted, **extra: float | None) -> None:
    """``export_report.json``: the ONNX graphs' largest difference to torch, ``extra`` figures, the
    conversion's notes."""
    report = {"parity_max_abs": {"audio": audio_err, "text": text_err}, **extra, "notes": converted.notes}
    (stage / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")


def logit_scale_fields(model) -> dict[str, float]:
    """The manifest's ``logit_scale_audio`` and ``logit_scale_text`` of a CLAP model."""
    scale_audio, scale_text = model.logit_scales()
    return {"logit_scale_audio": float(scale_audio.detach()), "logit_scale_text": float(scale_text.detach())}


def provenance(converted, converter: str) -> Provenance:
    return Provenance(
        source=converted.source,
        source_format=converted.source_format,
        source_sha256=converted.source_sha256,
        converter=converter,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=tool_versions(),
    )
