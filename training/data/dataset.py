"""The torch Dataset: a record -> the exact model input serving computes, plus its caption.

Features always come from ``indexer.audio.views`` (``file_views`` / ``array_views``), the same code
the encoder runs at serving time; with augmentation off a sample is bit-for-bit what
``ClapEncoder.views_from_file`` gives. Augmentation only changes *which* crop or fusion chunks are
taken (``choose``) and, optionally, the waveform before the front end.

Reproducibility: every random choice of item ``i`` in epoch ``e`` comes from
``SeedSequence([seed, e, i])``, so a sample does not depend on the worker count, the order in which
workers run, or where a run was resumed. With ``persistent_workers=True`` a worker keeps its copy
of the dataset and misses ``set_epoch``; then let :class:`~training.data.sampler.EpochSampler`
yield ``(epoch, i)`` keys (``yield_epoch=True``), which ``__getitem__`` accepts.

Bad audio never kills a run: a clip that fails to decode is logged once (with its manifest file
and line), counted in ``failures`` (per process), and replaced by the next decodable item,
``(i + 1) % n``, up to ``max_attempts``; the sample says ``substituted=True`` so the main process
can count them. Limitation: clips that get waveform augmentation are decoded whole (bounded by
``limits``); without it, long files stream as in serving.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from indexer.audio.clip import ClipViews, repeat_pad
from indexer.audio.decode import DecodeLimits, load_audio, prepare_waveform
from indexer.audio.frontend import num_frames
from indexer.audio.views import ViewChooser, array_views, file_views
from indexer.errors import AudioDecodeError, AudioError, AudioTooLongError
from indexer.models.manifest import AudioFrontend
from indexer.text import TextTokenizer
from training.data.captions import CaptionPolicy, combine_captions
from training.data.records import ClipRecord, split_tar_ref
from training.train_config import AugmentConfig

log = logging.getLogger(__name__)

# What a bad clip can raise; anything else (ValueError from a bug...) should surface.
DECODE_ERRORS = (AudioError, sf.SoundFileError, tarfile.TarError, OSError, EOFError)


# ----------------------------------------------------------------------------- tar members

_MAX_OPEN_TARS = 64
_TarEntry = tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]
_TARS: OrderedDict[tuple[str, int], _TarEntry] = OrderedDict()


def read_tar_member(shard: str, member: str) -> bytes:
    """Bytes of one member. Open shards are cached per process (the key holds the pid: a forked
    DataLoader worker must not share its parent's file offset), at most 64 of them."""
    key = (shard, os.getpid())
    entry = _TARS.get(key)
    if entry is None:
        tar = tarfile.open(shard, "r:*")
        entry = _TARS[key] = (tar, {m.name: m for m in tar.getmembers() if m.isfile()})
        while len(_TARS) > _MAX_OPEN_TARS:
            _, (old, _) = _TARS.popitem(last=False)
            old.close()  # in a forked child this closes only the child's copy of the descriptor
    _TARS.move_to_end(key)
    tar, index = entry
    info = index.get(member)
    if info is None:
        raise AudioDecodeError(f"{shard}#{member}", "no such member in the shard")
    return tar.extractfile(info).read()


def decode_bytes(data: bytes, name: str, limits: DecodeLimits) -> tuple[np.ndarray, int]:
    """``(samples (n, channels) float32, sample_rate)`` of an encoded file held in memory, read
    like ``load_audio`` reads a file (libsndfile float32), the duration checked before decoding."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate = int(handle.samplerate)
            if limits.max_duration_s is not None and handle.frames > limits.max_duration_s * rate:
                raise AudioTooLongError(name, f"longer than the {limits.max_duration_s:g} s limit")
            return handle.read(dtype="float32", always_2d=True), rate
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioDecodeError(name, f"cannot be decoded ({exc})") from exc


# ----------------------------------------------------------------------------- waveform edits


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _scale_to_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = _rms(x)
    return x if rms < 1e-8 else x * np.float32(10 ** (dbfs / 20) / rms)


def _noise(color: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)  # 1/f power: pink


def _fit_length(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if y.shape[0] >= n:
        start = int(rng.integers(y.shape[0] - n + 1))
        return y[start : start + n]
    return repeat_pad(y, n)


# ----------------------------------------------------------------------------- dataset


class ClapDataset(Dataset):
    """Records -> ``{"features", "is_longer", "caption", "index", "source_index", "substituted"}``.

    ``features`` is a float32 tensor ``(C, chunk_frames, n_mels)``; ``index`` is the requested
    item, ``source_index`` the one actually loaded (differs when substituted). ``augment=None``
    means :meth:`AugmentConfig.off` (serving features), ``caption_policy=None`` the default
    :class:`CaptionPolicy`. ``on_error="fail"`` raises on bad audio instead (for debugging).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        frontend: AudioFrontend,
        *,
        caption_policy: CaptionPolicy | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        limits: DecodeLimits = DecodeLimits(),
        on_error: Literal["skip", "fail"] = "skip",
        max_attempts: int = 16,
    ):
        if not records:
            raise ValueError("ClapDataset needs at least one record")
        self.records = list(records)
        self.frontend = frontend
        self.caption_policy = caption_policy or CaptionPolicy()
        self.augment = augment or AugmentConfig.off()
        self.seed, self.limits, self.on_error = int(seed), limits, on_error
        self.max_attempts = max(1, max_attempts)
        self.epoch = 0
        self.failures = 0  # per process: workers count their own
        self._warned: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        epoch, i, n = int(epoch), int(i), len(self.records)
        if not 0 <= i < n:
            raise IndexError(f"item {i} outside [0, {n})")
        last: Exception | None = None
        for attempt in range(min(self.max_attempts, n)):
            j = (i + attempt) % n
            try:
                views, caption = self.load(j, epoch)
            except DECODE_ERRORS as exc:
                if self.on_error == "fail":
                    raise
                self._note_failure(j, exc)
                last = exc
                continue
            return {
                "features": torch.from_numpy(views.features),
                "is_longer": torch.tensor(views.is_longer),
                "caption": caption,
                "index": i,
                "source_index": j,
                "substituted": attempt > 0,
            }
        raise RuntimeError(
            f"{min(self.max_attempts, n)} items from {i} on failed to load "
            f"(from {self.records[i].where}); last error: {last}"
        )

    def _note_failure(self, j: int, exc: Exception) -> None:
        self.failures += 1
        if j not in self._warned:
            self._warned.add(j)
            log.warning("skipping %s (%s): %s; using the next item", self.records[j].where, self.records[j].audio, exc)

    def load(self, j: int, epoch: int) -> tuple[ClipViews, str]:
        """Views and caption of item ``j`` in ``epoch``; raises on bad audio (no substitution)."""
        record, aug, spec, limits = self.records[j], self.augment, self.frontend, self.limits
        seeds = np.random.SeedSequence([self.seed, epoch, j]).spawn(4)
        caption_rng, view_rng, wave_rng, mix_rng = (np.random.default_rng(s) for s in seeds)
        caption = self.caption_policy.pick(record, caption_rng)
        random_views = aug.enabled and (aug.random_crop or aug.random_fusion)
        choose = self.view_chooser(view_rng) if random_views else None
        if aug.needs_waveform:
            wave, caption = self._augmented(j, caption, wave_rng, mix_rng)
            views = array_views(wave, spec.sample_rate, spec, name=record.audio, limits=limits, choose=choose)
        elif (ref := split_tar_ref(record.audio)) is None:
            views = file_views(record.audio, spec, limits=limits, choose=choose)[0]
        else:
            samples, rate = decode_bytes(read_tar_member(*ref), record.audio, limits)
            views = array_views(samples, rate, spec, name=record.audio, limits=limits, choose=choose)
        return views, caption

    def waveform(self, record: ClipRecord) -> np.ndarray:
        """Mono float32 at the front end's rate, decoded whole (files or tar members)."""
        ref = split_tar_ref(record.audio)
        if ref is None:
            return load_audio(record.audio, self.frontend.sample_rate, limits=self.limits)
        samples, rate = decode_bytes(read_tar_member(*ref), record.audio, self.limits)
        return prepare_waveform(samples, rate, self.frontend.sample_rate, name=record.audio, limits=self.limits)

    def _augmented(
        self, j: int, caption: str, rng: np.random.Generator, mix_rng: np.random.Generator
    ) -> tuple[np.ndarray, str]:
        aug = self.augment
        wave = self.waveform(self.records[j])
        if aug.normalize_dbfs is not None:
            wave = _scale_to_dbfs(wave, aug.normalize_dbfs)
        n = len(self.records)
        if n > 1 and mix_rng.random() < aug.mix_prob:
            other = (j + 1 + int(mix_rng.integers(n - 1))) % n  # any item but this one
            try:
                extra = self.waveform(self.records[other])
            except DECODE_ERRORS as exc:
                self._note_failure(other, exc)
            else:
                if aug.normalize_dbfs is not None:
                    extra = _scale_to_dbfs(extra, aug.normalize_dbfs)
                ratio = mix_rng.uniform(*aug.mix_ratio)
                wave = (1 - ratio) * wave + ratio * _fit_length(extra, wave.shape[0], mix_rng)
                other_caption = self.caption_policy.pick(self.records[other], mix_rng)
                caption = combine_captions(caption, other_caption)
        if aug.gain_db is not None:
            wave = wave * 10 ** (rng.uniform(*aug.gain_db) / 20)
        if aug.noise_snr_db is not None and rng.random() < aug.noise_prob:
            color = aug.noise_colors[int(rng.integers(len(aug.noise_colors)))]
            snr = rng.uniform(*aug.noise_snr_db)
            noise = _noise(color, wave.shape[0], rng)
            signal = _rms(wave)
            if signal > 0:
                wave = wave + noise * (signal / (_rms(noise) * 10 ** (snr / 20)))
        return np.asarray(wave, dtype=np.float32), caption

    def view_chooser(self, rng: np.random.Generator) -> ViewChooser:
        """The random crop / fusion chunk choice for ``array_views``/``file_views``."""
        spec, aug = self.frontend, self.augment

        def choose(num_samples: int) -> dict:
            if num_samples <= spec.clip_samples:
                return {}
            if spec.long_policy != "fusion":
                if not aug.random_crop:
                    return {}
                return {"crop_start": int(rng.integers(num_samples - spec.clip_samples + 1))}
            positions = num_frames(num_samples, spec) - spec.chunk_frames + 1
            if not aug.random_fusion or positions <= 1:
                return {}
            starts, lo = [], 0  # np.array_split's thirds of range(positions), laion_clap's draw
            for k in range(3):
                size = positions // 3 + (1 if k < positions % 3 else 0)
                starts.append(lo + int(rng.integers(size)) if size else 0)
                lo += size
            return {"fusion_starts": tuple(starts)}

        return choose


class CaptionCollator:
    """Batches samples and tokenizes their captions (padded to the longest, like serving).
    A class, not a closure, so it pickles into spawned DataLoader workers."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items: Sequence[dict]) -> dict:
        captions = [item["caption"] for item in items]
        ids, mask = self.tokenizer.encode_batch(captions)
        return {
            "features": stack_features([item["features"] for item in items]),
            "is_longer": torch.stack([item["is_longer"] for item in items]),
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "index": torch.tensor([item["index"] for item in items], dtype=torch.int64),
            "captions": captions,
            "substituted": torch.tensor([item["substituted"] for item in items], dtype=torch.bool),
        }


def stack_features(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``(C, T, F)`` features; views of different length (patch models see whole clips, so T
    varies) are filled with NaN past their end, which patch towers read as "no patch here"."""
    longest = max(f.shape[1] for f in features)
    if all(f.shape[1] == longest for f in features):
        return torch.stack(list(features))
    out = torch.full((len(features), features[0].shape[0], longest, features[0].shape[2]), float("nan"))
    for i, f in enumerate(features):
        out[i, :, : f.shape[1]] = f
    return out


def make_collate(tokenizer: TextTokenizer) -> CaptionCollator:
    return CaptionCollator(tokenizer)
