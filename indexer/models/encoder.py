"""ClapEncoder: a model folder -> L2-normalised float32 vectors, with ONNX Runtime and no torch.

    enc = ClapEncoder.open("models/clap-htsat-fused")          # reads manifest.json
    enc.embed_text(["dog barking in the rain"])                  # (1, 512)
    for item in enc.embed_files(paths): ...                      # FileEmbedding(path, vector, error)

Determinism: the same file gives the bit-identical vector alone or inside any batch.
* every clip's views are computed on their own (``indexer.audio.clip``), with fixed fusion chunks;
* audio clips all have the same shape, and ONNX Runtime's CPU kernels compute each batch row with
  the same arithmetic whatever the batch size (checked by tests and ``bench/embed.py``);
* texts are never padded against each other: a batch is split into groups of equal token length,
  so a text's computation does not depend on its neighbours' lengths. Padding the batch to its
  longest text in one call (attention mask) or to width buckets was measured slower, also for the
  row-wise int8 text tower where padding provably changes no bit (``bench/text_batches.py``,
  ``bench/embed.py``: padded rows cost arithmetic, a call per length costs little). Measured on
  AMD EPYC (AVX2) with ONNX Runtime 1.32, float graphs: rows of any two multi-row calls agree bit
  for bit, but a call with ONE row takes a single-row kernel path and may differ at rounding level
  (<= 2.4e-7 per coordinate, cosine 1 - 1e-13), so a query's text vector alone and inside a batch
  is equal to float rounding, not to the bit; the int8 text tower (``training.rowwise_int8``) is
  bit-identical alone and in any batch;
* a variant whose export measured it NOT batch-invariant (dynamic int8 quantisation picks its
  activation scales per batch) runs one item per call instead;
* patch models (``patch_mean``): each patch's tower output is computed row by row whatever else
  shares its ONNX call, and a file's mean is a float64 reduction over its own rows only.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.audio.clip import ClipViews
from indexer.audio.decode import DecodeLimits
from indexer.audio.patches import PATCH_CHUNK, frames_to_patches
from indexer.audio.views import array_views, file_views
from indexer.errors import AudioError, ModelError
from indexer.models.manifest import Manifest, load_manifest
from indexer.models.options import OnnxOptions
from indexer.text import TextTokenizer


@dataclass(frozen=True)
class FileEmbedding:
    path: str
    vector: np.ndarray | None  # (D,) float32, unit norm; None when ``error`` is set
    error: AudioError | None = None
    duration_s: float | None = None
    is_longer: bool = False


def available_providers(prefer: str = "auto") -> list[str]:
    """ONNX Runtime providers to use: CUDA when present (and wanted), CPU always as the fallback."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if prefer == "cpu":
        return ["CPUExecutionProvider"]
    if prefer == "cuda" and "CUDAExecutionProvider" not in have:
        raise ModelError(
            "CUDA was requested but this onnxruntime build has no CUDAExecutionProvider "
            "(install the 'gpu' extra: onnxruntime-gpu)"
        )
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []) + ["CPUExecutionProvider"]


class ClapEncoder:
    def __init__(
        self,
        folder: str | Path,
        manifest: Manifest,
        *,
        variant: str | None = None,
        options: OnnxOptions | None = None,
        device: str = "auto",
        threads: int | None = None,
        spinning: bool = True,
    ):
        """``options`` (the settings' ``onnx``), or its fields as keywords for one-off use."""
        import onnxruntime as ort

        if options is not None:
            device, threads, spinning = options.device, options.threads, options.spinning

        variant = variant or manifest.default_variant
        shipped = sorted(k for k, v in manifest.variants.items() if v.shipped)
        if variant not in shipped:
            raise ModelError(f"{folder}: no {variant!r} variant in this folder; it has {shipped}")
        self.folder = Path(folder)
        self.manifest = manifest
        self.variant = variant
        files = manifest.variants[variant]
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = threads or 0  # 0 = one per physical core
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        if not spinning:
            # Idle intra-op threads otherwise busy-wait for the next call: good for back-to-back
            # ingest batches, bad for a server whose event loop needs those cores between calls.
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = available_providers(device)
        self._audio = ort.InferenceSession(str(self.folder / files.audio), session_options, providers=providers)
        self._text = ort.InferenceSession(str(self.folder / files.text), session_options, providers=providers)
        self._head = (
            ort.InferenceSession(str(self.folder / files.audio_head), session_options, providers=providers)
            if files.audio_head
            else None
        )
        self.providers = self._audio.get_providers()
        # One clip per call also when the variant is batch-invariant but runs on CPU: a clip's
        # activations (~100 MB for HTSAT-tiny at batch 16) then stay in cache, and ONNX Runtime's
        # CPU cost per clip is lowest at batch 1 (fp32: 60 ms at batch 1, 75 ms at batch 16).
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        self._audio_max_batch = 1 if on_cpu or not files.audio_batch_invariant else None
        if manifest.patched:  # a patch is small: many per call, unless the variant is not row-invariant
            self._audio_max_batch = PATCH_CHUNK if files.audio_batch_invariant else 1
        self._text_max_batch = None if files.text_batch_invariant else 1
        self.tokenizer = TextTokenizer(
            self.folder / manifest.text.tokenizer,
            max_length=manifest.text.max_length,
            pad_token_id=manifest.text.pad_token_id,
        )

    def session_providers(self) -> dict[str, list[str]]:
        """The execution providers each graph actually runs with, best first."""
        sessions = {"audio": self._audio, "text": self._text, "audio_head": self._head}
        return {name: list(s.get_providers()) for name, s in sessions.items() if s is not None}

    @classmethod
    def open(cls, folder: str | Path, **kwargs) -> ClapEncoder:
        return cls(folder, load_manifest(folder), **kwargs)

    @property
    def dim(self) -> int:
        return self.manifest.embed_dim

    # ------------------------------------------------------------------ text
    def embed_text(self, texts: Sequence[str] | str) -> np.ndarray:
        """(N, D) unit vectors for N texts, in input order."""
        if isinstance(texts, str):
            texts = [texts]
        rows = self.tokenizer.ids(list(texts))
        out = np.empty((len(rows), self.dim), np.float32)
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_length[len(row)].append(i)
        for members in by_length.values():
            for group in _split(members, self._text_max_batch):
                ids = np.stack([rows[i] for i in group])
                out[group] = self._text.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        return out

    # ------------------------------------------------------------------ audio
    def views_from_waveform(self, samples: np.ndarray, sample_rate: int, *, name: str | None = None) -> ClipViews:
        """Model input for an in-memory waveform at any rate, (n,) or (n, channels)."""
        return array_views(samples, sample_rate, self.manifest.audio_frontend, name=name)

    def views_from_file(self, path: str | Path, *, limits: DecodeLimits = DecodeLimits()) -> tuple[ClipViews, float]:
        """Model input for one file, decoding with bounded memory; returns (views, duration_s)."""
        return file_views(path, self.manifest.audio_frontend, limits=limits)

    def embed_views(self, views: Sequence[ClipViews]) -> np.ndarray:
        """(N, D) unit vectors for precomputed clip views (one ONNX call)."""
        if not views:
            return np.zeros((0, self.dim), np.float32)
        if self._head is not None:
            return self._embed_patched(views)
        parts = []
        for group in _split(list(views), self._audio_max_batch):
            features = np.stack([v.features for v in group])
            is_longer = np.array([v.is_longer for v in group], dtype=bool)
            parts.append(self._audio.run(None, {"input_features": features, "is_longer": is_longer})[0])
        return np.concatenate(parts)

    def patch_outputs(self, views: Sequence[ClipViews]) -> list[np.ndarray]:
        """Patch models: each view's per-patch tower outputs, ``(P_i, patch_outputs)`` float32.

        Patches of all views share ONNX calls of up to ``PATCH_CHUNK`` rows (many short files are
        one call); a row's result does not depend on its neighbours (checked at export).
        """
        spec = self.manifest.audio_frontend
        pieces = [frames_to_patches(v.features[0], spec) for v in views]
        rows = np.empty((sum(p.shape[0] for p in pieces), self.manifest.audio.patch_outputs or 0), np.float32)
        step = self._audio_max_batch or PATCH_CHUNK
        pending: list[np.ndarray] = []
        done = filled = 0
        for piece in pieces:
            for start in range(0, piece.shape[0], step):
                pending.append(piece[start : start + step])
                filled += pending[-1].shape[0]
                if filled >= step:
                    done = self._run_patches(pending, rows, done)
                    pending, filled = [], 0
        if pending:
            self._run_patches(pending, rows, done)
        bounds = np.cumsum([0] + [p.shape[0] for p in pieces])
        return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _run_patches(self, pending: list[np.ndarray], rows: np.ndarray, done: int) -> int:
        batch = np.ascontiguousarray(np.concatenate(pending), dtype=np.float32)
        step = self._audio_max_batch or batch.shape[0]
        for start in range(0, batch.shape[0], step):
            part = batch[start : start + step]
            rows[done : done + part.shape[0]] = self._audio.run(None, {"patches": part})[0]
            done += part.shape[0]
        return done

    def pool_patches(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Per-file mean of patch outputs (float64 sums over each file's own rows) -> head -> (N, D)."""
        pooled = np.stack([np.add.reduce(o, axis=0, dtype=np.float64) / max(1, o.shape[0]) for o in outputs])
        return self._run_head(pooled.astype(np.float32))

    def _run_head(self, pooled: np.ndarray) -> np.ndarray:
        assert self._head is not None
        return (
            np.concatenate([self._head.run(None, {"pooled": pooled[i : i + 1]})[0] for i in range(pooled.shape[0])])
            if pooled.shape[0]
            else np.zeros((0, self.dim), np.float32)
        )

    def _embed_patched(self, views: Sequence[ClipViews]) -> np.ndarray:
        return self.pool_patches(self.patch_outputs(views))

    def embed_waveforms(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        return self.embed_views([self.views_from_waveform(w, sample_rate) for w in waveforms])

    def embed_files(
        self,
        paths: Iterable[str | Path],
        *,
        batch_size: int = 16,
        workers: int | None = None,
        limits: DecodeLimits = DecodeLimits(),
    ) -> Iterator[FileEmbedding]:
        """Embed files in order; a bad file yields a FileEmbedding with ``error`` and never stops the run.

        Decoding and the front end run in a thread pool (soundfile, soxr and numpy's FFT release
        the GIL) one batch ahead of the ONNX call, so neither stage waits on the other for long.
        """
        workers = workers or max(1, min(4, os.cpu_count() or 1))

        def prepare(path: str | Path):
            try:
                views, duration = self.views_from_file(path, limits=limits)
                return str(path), views, duration, None
            except AudioError as exc:
                return str(path), None, None, exc

        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = _chunks(iter(paths), batch_size)
            futures = [pool.submit(prepare, p) for p in next(pending, [])]
            while futures:
                upcoming = [pool.submit(prepare, p) for p in next(pending, [])]  # decode ahead
                done = [f.result() for f in futures]
                good = [(i, d) for i, d in enumerate(done) if d[3] is None]
                vectors = self.embed_views([d[1] for _, d in good])
                vector_of = {i: vectors[k] for k, (i, _) in enumerate(good)}
                for i, (path, views, duration, error) in enumerate(done):
                    yield FileEmbedding(
                        path, vector_of.get(i), error, duration, bool(views.is_longer) if views is not None else False
                    )
                futures = upcoming


def _split(items: list, size: int | None) -> list[list]:
    """``items`` in consecutive groups of at most ``size`` (one group when ``size`` is None)."""
    if size is None:
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
