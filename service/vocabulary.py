"""The default label vocabulary for audio->text and multi-label scores: AudioSet's sound classes.

``data/audioset_ontology.json`` is the AudioSet ontology (632 classes; CC BY-SA 4.0, credit
"AudioSet ontology, Google"), shipped with the package. Blacklisted classes (ones AudioSet
itself found unreliable) are left out; users add their own words with
``CLAPSEARCH_VOCABULARY_FILE`` (one label per line) or per request.

Each label is phrased with ``label_template`` ("This is a sound of {}.", the CLAP papers' prompt)
and embedded once per model; the vectors are kept on disk beside the database, keyed by the
model fingerprint and the exact texts, so a restart does not re-embed them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger("service.vocabulary")


def audioset_labels() -> list[str]:
    data = json.loads(resources.files("service").joinpath("data/audioset_ontology.json").read_text("utf-8"))
    names = [entry["name"] for entry in data if "blacklist" not in entry.get("restrictions", [])]
    return list(dict.fromkeys(names))


def read_label_file(path: Path) -> list[str]:
    return [
        line.strip()
        for line in Path(path).read_text("utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def phrase(template: str, label: str) -> str:
    """``template`` with the label in place of ``{}`` (or ``{label}``); braces in labels are safe."""
    return template.replace("{label}", "{}").replace("{}", label, 1)


class Vocabulary:
    def __init__(self, labels: list[str], template: str, *, cache_dir: Path | None = None, model_key: str = ""):
        self.labels = list(dict.fromkeys(labels))
        self.template = template
        self.texts = [phrase(template, label) for label in self.labels]
        self.cache_dir, self.model_key = cache_dir, model_key
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._vectors is not None

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256("\n".join([self.model_key, *self.texts]).encode()).hexdigest()[:20]
        return self.cache_dir / f"vocabulary-{digest}.npy"

    def vectors(self, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(n_labels, D) unit vectors, embedding them on first use (thread-safe, once)."""
        if self._vectors is not None:
            return self._vectors
        with self._lock:
            if self._vectors is None:
                self._vectors = self._load_or_embed(embed)
        return self._vectors

    def _load_or_embed(self, embed) -> np.ndarray:
        cached = self._cache_file()
        if cached is not None and cached.is_file():
            try:
                vectors = np.load(cached)
                if vectors.shape[0] == len(self.texts):
                    return vectors
            except (OSError, ValueError):
                log.warning("ignoring unreadable vocabulary cache %s", cached)
        vectors = np.concatenate([embed(self.texts[i : i + 256]) for i in range(0, len(self.texts), 256)])
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp.npy")
                np.save(tmp, vectors)
                tmp.replace(cached)
            except OSError as exc:
                log.warning("could not cache vocabulary vectors at %s: %s", cached, exc)
        return vectors
