"""The two peers ``bench/embed.py`` compares us with. Deliberately uses NONE of our code.

(a) ``EagerPeer``: transformers' ``ClapModel`` + ``ClapFeatureExtractor``, eager PyTorch fp32.
(b) ``OnnxInt8Peer``: the baseline a knowledgeable user builds in an afternoon from the same model:
    ``torch.onnx.export`` of ``get_audio_features`` / ``get_text_features`` (default exporter,
    dynamic batch), ``onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`` with default
    options, a default ``InferenceSession``, and transformers' numpy feature extractor.

Both read files with soundfile and feed the feature extractor the way the model card shows
(``frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad"``; the
benchmark's clips are exactly 10 s, so the random truncation never fires).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

FEATURE_EXTRACTOR_KWARGS = dict(frequency_min=50, frequency_max=14_000, truncation="rand_trunc", padding="repeatpad")


def read_mono(path: str | Path) -> np.ndarray:
    """soundfile decode to float32 mono (the benchmark's files are already 48 kHz)."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != 48_000:
        raise ValueError(f"{path}: expected 48 kHz, got {rate}")
    return samples.mean(axis=1)


class EagerPeer:
    """transformers eager PyTorch, fp32."""

    name = "eager transformers fp32"

    def __init__(self, model, tokenizer_dir: str | Path, threads: int):
        import torch
        from transformers import AutoTokenizer, ClapFeatureExtractor

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = model.eval()
        self.extractor = ClapFeatureExtractor(**FEATURE_EXTRACTOR_KWARGS)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def embed_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        waves = [read_mono(p) for p in paths]
        inputs = self.extractor(waves, sampling_rate=48_000, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model.get_audio_features(input_features=inputs["input_features"])
        return out.pooler_output.numpy()

    def embed_text(self, text: str) -> np.ndarray:
        inputs = self.tokenizer(text, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.pooler_output.numpy()[0]

    def tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])


def export_onnx_int8_baseline(model, out_dir: str | Path, *, dynamo: bool = True) -> dict[str, Path]:
    """Export both towers with ``torch.onnx.export`` and quantize them with default options."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class AudioTower(torch.nn.Module):
        def __init__(self, clap):
            super().__init__()
            self.clap = clap

        def forward(self, input_features):
            return self.clap.get_audio_features(input_features=input_features).pooler_output

    class TextTower(torch.nn.Module):
        def __init__(self, clap):
            super().__init__()
            self.clap = clap

        def forward(self, input_ids, attention_mask):
            return self.clap.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    bins = model.config.audio_config.num_mel_bins
    features = torch.randn(2, 1, 1001, bins) * 10 - 40
    ids = torch.full((2, 12), 5, dtype=torch.long)
    ids[:, 0], ids[:, -1] = 0, 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            AudioTower(model),
            (features,),
            str(out / "audio.onnx"),
            input_names=["input_features"],
            output_names=["audio_embeds"],
            dynamic_axes={"input_features": {0: "batch"}, "audio_embeds": {0: "batch"}},
            opset_version=17,
            dynamo=dynamo,
        )
        torch.onnx.export(
            TextTower(model),
            (ids, torch.ones_like(ids)),
            str(out / "text.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeds"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "text_embeds": {0: "batch"},
            },
            opset_version=17,
            dynamo=dynamo,
        )
    files = {}
    for tower in ("audio", "text"):
        files[tower] = out / f"{tower}.int8.onnx"
        quantize_dynamic(str(out / f"{tower}.onnx"), str(files[tower]), weight_type=QuantType.QInt8)
    return files


class OnnxInt8Peer:
    """The afternoon baseline: default ONNX Runtime session on the dynamically quantized export."""

    name = "ONNX int8 baseline"

    def __init__(self, files: dict[str, Path], tokenizer_dir: str | Path):
        import onnxruntime as ort
        from transformers import AutoTokenizer, ClapFeatureExtractor

        self.audio = ort.InferenceSession(str(files["audio"]), providers=["CPUExecutionProvider"])
        self.text = ort.InferenceSession(str(files["text"]), providers=["CPUExecutionProvider"])
        self.extractor = ClapFeatureExtractor(**FEATURE_EXTRACTOR_KWARGS)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def embed_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        waves = [read_mono(p) for p in paths]
        inputs = self.extractor(waves, sampling_rate=48_000, return_tensors="np")
        return self.audio.run(None, {"input_features": inputs["input_features"]})[0]

    def embed_text(self, text: str) -> np.ndarray:
        inputs = self.tokenizer(text, return_tensors="np")
        return self.text.run(
            None,
            {
                "input_ids": inputs["input_ids"].astype(np.int64),
                "attention_mask": inputs["attention_mask"].astype(np.int64),
            },
        )[0][0]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """A batch the way the model card shows: padded to its longest text, one call."""
        inputs = self.tokenizer(list(texts), padding=True, return_tensors="np")
        return self.text.run(
            None,
            {
                "input_ids": inputs["input_ids"].astype(np.int64),
                "attention_mask": inputs["attention_mask"].astype(np.int64),
            },
        )[0]
