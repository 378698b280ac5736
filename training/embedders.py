"""Embedders: what evaluation runs a model through, ONNX (serving) or torch (training).

Both turn audio into model input with the runtime's own code (``indexer.audio.views``; records
pointing into WebDataset shards, ``shard.tar#member``, are decoded from the shard) and tokenise
texts exactly as ``ClapEncoder.embed_text`` does (no padding between texts of different length),
so a model scores the same through either, up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.errors import AudioError, EvaluationError


def audio_views(ref: str, frontend):
    """Model input for a file path or a ``shard.tar#member`` reference."""
    from indexer.audio.views import array_views, file_views
    from training.data.records import split_tar_ref

    member = split_tar_ref(str(ref))
    if member is None:
        return file_views(ref, frontend)[0]
    from indexer.audio.decode import DecodeLimits
    from training.data.dataset import decode_bytes, read_tar_member

    limits = DecodeLimits()
    samples, rate = decode_bytes(read_tar_member(*member), str(ref), limits)
    return array_views(samples, rate, frontend, name=str(ref), limits=limits)


class EvalRecord(Protocol):
    """What evaluation reads from a record (``training.data.records.ClipRecord`` has these)."""

    audio: str
    captions: Sequence[str]
    labels: Sequence[str]


class Embedder(Protocol):
    """Unit vectors for audio files and texts. A failed file raises :class:`EvaluationError`, or,
    for an embedder built with ``skip_failed=True``, gets a NaN row and an entry in ``failures``."""

    identity: dict[str, Any]
    failures: dict[str, str]

    def embed_audio(self, paths: Sequence[str]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def _failed(failures: dict[str, str], skip: bool, dim: int, rows: list) -> np.ndarray:
    """Stack ``rows`` (None for a failed file) or raise, listing what failed."""
    if failures and not skip:
        listed = "; ".join(f"{p}: {r}" for p, r in list(failures.items())[:10])
        more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
        raise EvaluationError(
            f"{len(failures)} audio file(s) could not be embedded: {listed}{more} "
            "(pass skip_failed=True / --skip-failed to evaluate without them)"
        )
    out = np.full((len(rows), dim), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = row
    return out


class OnnxEmbedder:
    """An exported model folder through the serving runtime (``ClapEncoder``)."""

    def __init__(
        self,
        model_folder: str | Path,
        variant: str | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        skip_failed: bool = False,
        batch_size: int = 16,
    ):
        from indexer.models.encoder import ClapEncoder

        self.encoder = ClapEncoder.open(model_folder, variant=variant, device=device, threads=threads)
        self.skip_failed, self.batch_size = skip_failed, batch_size
        self.failures: dict[str, str] = {}
        m = self.encoder.manifest
        self.identity = {
            "kind": "onnx",
            "name": m.name,
            "folder": str(model_folder),
            "variant": self.encoder.variant,
            "fingerprint": m.fingerprint,
            "embed_dim": m.embed_dim,
            "providers": list(self.encoder.providers),
        }

    def embed_audio(self, paths: Sequence[str]) -> np.ndarray:
        from training.data.records import split_tar_ref

        rows, failures = [], {}
        if any(split_tar_ref(str(p)) for p in paths):  # shard members: views here, one model call each
            for ref in paths:
                try:
                    rows.append(self.encoder.embed_views([audio_views(ref, self.encoder.manifest.audio_frontend)])[0])
                except AudioError as exc:
                    rows.append(None)
                    failures[str(ref)] = exc.reason
            self.failures.update(failures)
            return _failed(failures, self.skip_failed, self.encoder.dim, rows)
        for item in self.encoder.embed_files([str(p) for p in paths], batch_size=self.batch_size):
            rows.append(item.vector)
            if item.error is not None:
                failures[item.path] = item.error.reason
        self.failures.update(failures)
        return _failed(failures, self.skip_failed, self.encoder.dim, rows)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed_text(list(texts))


class TorchEmbedder:
    """torch towers (e.g. ``training.towers.AudioEmbedder(model)`` / ``TextEmbedder(model)``) fed
    exactly what the ONNX runtime is fed. Modules are switched to eval mode for each call and
    restored afterwards, so a model in the middle of training can be evaluated."""

    def __init__(
        self,
        audio_fn: Callable,
        text_fn: Callable,
        frontend,
        tokenizer_file: str | Path,
        max_length: int,
        pad_token_id: int,
        batch_size: int = 16,
        device: str = "cpu",
        *,
        skip_failed: bool = False,
        name: str = "torch",
    ):
        from indexer.text import TextTokenizer

        self.audio_fn, self.text_fn, self.frontend = audio_fn, text_fn, frontend
        self.tokenizer = TextTokenizer(tokenizer_file, max_length=max_length, pad_token_id=pad_token_id)
        self.batch_size, self.device, self.skip_failed = batch_size, device, skip_failed
        self.failures: dict[str, str] = {}
        self.identity = {"kind": "torch", "name": name, "device": device, "batch_size": batch_size}

    @classmethod
    def from_converted(cls, converted, **kwargs) -> TorchEmbedder:
        """From a ``training.convert.ConvertedModel`` (e.g. ``load_hf_folder(folder)``)."""
        from training.towers import AudioEmbedder, TextEmbedder

        model = converted.model
        device = kwargs.get("device", "cpu")
        kwargs.setdefault("name", Path(str(converted.source)).name)
        return cls(
            AudioEmbedder(model).to(device),
            TextEmbedder(model).to(device),
            converted.frontend,
            Path(converted.tokenizer_dir) / "tokenizer.json",
            converted.max_text_length,
            int(model.config.text_config.pad_token_id),
            **kwargs,
        )

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        import torch

        modules = [f for f in (self.audio_fn, self.text_fn) if isinstance(f, torch.nn.Module)]
        modes = [m.training for m in modules]
        try:
            for m in modules:
                m.eval()
            with torch.inference_mode():
                yield
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)

    def embed_audio(self, paths: Sequence[str]) -> np.ndarray:
        import torch

        rows: list = [None] * len(paths)
        failures: dict[str, str] = {}
        dim = None
        with self._inference():
            for start in range(0, len(paths), self.batch_size):  # decode one batch at a time
                good = []
                for i in range(start, min(start + self.batch_size, len(paths))):
                    try:
                        good.append((i, audio_views(paths[i], self.frontend)))
                    except AudioError as exc:
                        failures[str(paths[i])] = exc.reason
                if not good:
                    continue
                features = torch.from_numpy(np.stack([v.features for _, v in good])).to(self.device)
                longer = torch.tensor([bool(v.is_longer) for _, v in good], device=self.device)
                out = self.audio_fn(features, longer).float().cpu().numpy()
                dim = out.shape[1]
                for (i, _), vector in zip(good, out):
                    rows[i] = vector
        self.failures.update(failures)
        if dim is None:  # nothing embedded: learn the width from one text
            dim = self.embed_texts(["a"]).shape[1]
        return _failed(failures, self.skip_failed, dim, rows)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Grouped by token length, never padded, like ``ClapEncoder.embed_text``."""
        import torch

        ids = self.tokenizer.ids(list(texts))
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(ids):
            by_length[len(row)].append(i)
        out: np.ndarray | None = None
        with self._inference():
            for members in by_length.values():
                for start in range(0, len(members), self.batch_size):
                    group = members[start : start + self.batch_size]
                    batch = torch.from_numpy(np.stack([ids[i] for i in group])).to(self.device)
                    vectors = self.text_fn(batch, torch.ones_like(batch)).float().cpu().numpy()
                    if out is None:
                        out = np.empty((len(ids), vectors.shape[1]), np.float32)
                    out[group] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)


class CachedEmbedder:
    """Embeds each distinct audio path and text once across tasks (``--task all``)."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self._audio: dict[str, np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}

    identity = property(lambda self: getattr(self.inner, "identity", {}))
    failures = property(lambda self: getattr(self.inner, "failures", {}))

    def _cached(self, keys: Sequence[str], store: dict, compute) -> np.ndarray:
        missing = list(dict.fromkeys(k for k in keys if k not in store))
        if missing:
            store.update(zip(missing, compute(missing)))
        return np.stack([store[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def embed_audio(self, paths: Sequence[str]) -> np.ndarray:
        return self._cached([str(p) for p in paths], self._audio, self.inner.embed_audio)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached(list(texts), self._text, self.inner.embed_texts)
