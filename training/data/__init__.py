"""Training data: manifests -> records -> (serving-identical features, caption) batches.

``readers`` turn listings (our JSONL/CSV, AudioCaps, Clotho, WebDataset shards) into
:class:`ClipRecord` lists; ``captions`` decides the text of each sample; ``dataset`` and
``sampler`` (the only torch users) feed a reproducible, resumable DataLoader. Torch is imported
only when ``ClapDataset``/``EpochSampler``/``AugmentConfig``/``make_collate`` are first used.
"""

from __future__ import annotations

from training.data.captions import (
    CaptionGenerator,
    CaptionPolicy,
    Seq2SeqCaptioner,
    combine_captions,
    debias,
    keywords_to_caption,
)
from training.data.public_readers import expand_shards, read_audiocaps, read_clotho, read_webdataset
from training.data.readers import read_any, read_csv, read_jsonl, summarize
from training.data.records import ClipRecord, ManifestError, ManifestIssue

_TORCH_NAMES = {
    "AugmentConfig": "training.train_config",
    "ClapDataset": "training.data.dataset",
    "CaptionCollator": "training.data.dataset",
    "make_collate": "training.data.dataset",
    "EpochSampler": "training.data.sampler",
}

__all__ = [
    "CaptionGenerator", "CaptionPolicy", "ClipRecord", "ManifestError", "ManifestIssue",
    "Seq2SeqCaptioner", "combine_captions", "debias", "expand_shards", "keywords_to_caption",
    "read_any", "read_audiocaps", "read_clotho", "read_csv", "read_jsonl", "read_webdataset",
    "summarize", *_TORCH_NAMES,
]


def __getattr__(name: str):
    """Lazy re-export of the torch-backed names, so readers and captions stay torch-free."""
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'training.data' has no attribute {name!r}")
