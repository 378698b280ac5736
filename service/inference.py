"""What the inference thread does with a batch of requests (``MicroBatcher``'s ``process``).

A batch mixes three kinds of work items; each kind is done in as few calls as possible:

* :class:`EmbedTexts` and text queries: every distinct text in the batch goes through ONE
  ``embed_text`` call (the encoder groups equal token lengths, so no text is padded against
  another; a batched vector agrees with a lone query's to ~1e-7, the same ranking);
* :class:`EmbedAudio`: uploaded clips' views in one ``embed_views`` call;
* :class:`SearchQuery`: unfiltered queries on the same index are stacked into ONE FAISS search
  and one metadata join; filtered queries (each with its own allowed ids) run one by one.

A failure is confined to the item that caused it when it can be: the rest of the batch answers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from indexer.audio.clip import ClipViews
from indexer.search import Hit, Searcher


@dataclass
class EmbedTexts:
    texts: list[str]  # -> (n, D) float32


@dataclass
class EmbedAudio:
    views: ClipViews  # -> (D,) float32


@dataclass
class SearchQuery:
    searcher: Searcher
    k: int
    vector: np.ndarray | None = None  # given, or embedded from ``text`` in this batch
    text: str | None = None
    allowed_ids: np.ndarray | None = None


@dataclass
class SearchOutcome:
    vector: np.ndarray
    hits: list[Hit] = field(default_factory=list)


class InferenceEngine:
    def __init__(self, encoder, metrics):
        self.encoder, self.metrics = encoder, metrics

    def __call__(self, items: list) -> list:
        results: list = [None] * len(items)
        self._texts(items, results)
        self._audio(items, results)
        self._searches(items, results)
        return results

    # ------------------------------------------------------------------ text
    def _texts(self, items: list, results: list) -> None:
        wanted: dict[str, None] = {}
        for item in items:
            if isinstance(item, EmbedTexts):
                wanted.update(dict.fromkeys(item.texts))
            elif isinstance(item, SearchQuery) and item.vector is None and item.text is not None:
                wanted[item.text] = None
        if not wanted:
            return
        texts = list(wanted)
        start = time.perf_counter()
        try:
            vectors = self.encoder.embed_text(texts)
            by_text = {t: vectors[i] for i, t in enumerate(texts)}
        except Exception:
            by_text = self._texts_one_by_one(texts)
        self.metrics.observe("embed_text", time.perf_counter() - start)
        for i, item in enumerate(items):
            try:
                if isinstance(item, EmbedTexts):
                    results[i] = np.stack([_unwrap(by_text[t]) for t in item.texts])
                elif isinstance(item, SearchQuery) and item.vector is None and item.text is not None:
                    item.vector = _unwrap(by_text[item.text])
            except Exception as exc:
                results[i] = exc

    def _texts_one_by_one(self, texts: list[str]) -> dict:
        out: dict = {}
        for text in texts:
            try:
                out[text] = self.encoder.embed_text([text])[0]
            except Exception as exc:
                out[text] = exc
        return out

    # ------------------------------------------------------------------ audio
    def _audio(self, items: list, results: list) -> None:
        slots = [i for i, item in enumerate(items) if isinstance(item, EmbedAudio)]
        if not slots:
            return
        start = time.perf_counter()
        try:
            vectors = self.encoder.embed_views([items[i].views for i in slots])
            for k, i in enumerate(slots):
                results[i] = vectors[k]
        except Exception:
            for i in slots:
                try:
                    results[i] = self.encoder.embed_views([items[i].views])[0]
                except Exception as exc:
                    results[i] = exc
        self.metrics.observe("embed_audio", time.perf_counter() - start)

    # ------------------------------------------------------------------ search
    def _searches(self, items: list, results: list) -> None:
        stacked: dict[int, list[int]] = defaultdict(list)  # id(searcher) -> item slots
        for i, item in enumerate(items):
            if not isinstance(item, SearchQuery) or isinstance(results[i], BaseException):
                continue
            if item.vector is None:
                results[i] = ValueError("search query without a vector or text")
            elif item.allowed_ids is None:
                stacked[id(item.searcher)].append(i)
            else:
                results[i] = self._run(item.searcher, [item], item.k, item.allowed_ids)[0]
        for slots in stacked.values():
            group = [items[i] for i in slots]
            k = max(item.k for item in group)
            for i, outcome in zip(slots, self._run(group[0].searcher, group, k, None)):
                results[i] = outcome

    def _run(self, searcher: Searcher, group: list[SearchQuery], k: int, allowed_ids: np.ndarray | None) -> list:
        timings: dict[str, float] = {}
        vectors = [q.vector for q in group if q.vector is not None]
        try:
            assert len(vectors) == len(group), "a query without a vector is answered before it is run"
            hits = searcher.search_vectors(np.stack(vectors), k, allowed_ids=allowed_ids, timings=timings)
        except Exception as exc:
            return [exc] * len(group)
        for stage, seconds in timings.items():
            self.metrics.observe(stage, seconds)
        return [SearchOutcome(v, h[: q.k]) for q, v, h in zip(group, vectors, hits)]


def _unwrap(value):
    if isinstance(value, BaseException):
        raise value
    return value
