"""Paging over a ranked list of hits: which hits a page may show (own file dropped, thresholds,
distinct moments) and ``total``, the number of hits paging can walk.

A vector search ranks every vector it may return, so ``total`` counts the hits passing the filters
and thresholds (own file excluded, moments merged) up to ``paging_reach`` (no page can show a
deeper one). Where this page's candidates do not show it, the caller searches once more for
``candidates_needed(reach_request(req), ...)`` candidates (``indexer/query.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from indexer.search import Hit

if TYPE_CHECKING:
    from indexer.query import SearchRequest

MOMENT_MERGE_MARGIN = 0.05  # a window this close to a kept moment's cosine widens its span

Relevance = Callable[[float], float]


def distinct_moments(hits: Sequence[Hit]) -> list[Hit]:
    """Non-maximum suppression over time: a window that overlaps a better moment of the same
    file is folded into it, so a page of moments shows distinct spans.

    Hits are taken best first. An overlapping window widens the kept moment's span only when its
    cosine is within ``MOMENT_MERGE_MARGIN`` of the moment's (one evenly matching stretch is
    reported whole); a clearly weaker one is just dropped, so two strong moments far apart in
    an hour-long file are not chained into one span through the weak windows between them.
    Whole-file hits (no span) pass through."""
    kept: list[Hit] = []
    by_file: dict[int, list[int]] = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        if hit.start_s is None or hit.end_s is None:
            kept.append(hit)
            continue
        for slot in by_file.get(hit.file_id, []):
            moment = kept[slot]
            assert moment.start_s is not None and moment.end_s is not None
            if hit.start_s < moment.end_s and moment.start_s < hit.end_s:
                if hit.score >= moment.score - MOMENT_MERGE_MARGIN:
                    start, end = min(moment.start_s, hit.start_s), max(moment.end_s, hit.end_s)
                    kept[slot] = replace(moment, start_s=start, end_s=end)
                break
        else:
            by_file.setdefault(hit.file_id, []).append(len(kept))
            kept.append(hit)
    return _coalesce(kept, by_file)


def _coalesce(kept: list[Hit], by_file: dict[int, list[int]]) -> list[Hit]:
    """A widened moment may reach another of its file's moments: join those (the better one's
    score and id, both spans), so no two moments of a page overlap."""
    gone: set[int] = set()
    for slots in by_file.values():
        slots = sorted(slots, key=lambda i: kept[i].start_s or 0.0)
        current = slots[0]
        for slot in slots[1:]:
            a, b = kept[current], kept[slot]
            assert a.end_s is not None and b.start_s is not None and b.end_s is not None
            if b.start_s < a.end_s:
                best, other = (current, slot) if a.score >= b.score else (slot, current)
                kept[best] = replace(kept[best], start_s=a.start_s, end_s=max(a.end_s, b.end_s))
                gone.add(other)
                current = best
            else:
                current = slot
    return [hit for i, hit in enumerate(kept) if i not in gone]


def _passes(req: SearchRequest, hit: Hit, relevance_of: Relevance | None) -> bool:
    """The thresholds, on the scores as shown (6 decimals)."""
    if req.min_score is not None and round(hit.score, 6) < req.min_score:
        return False
    if req.min_relevance is not None and relevance_of is not None:
        return round(relevance_of(hit.score), 6) >= req.min_relevance
    return True


def passing_hits(
    req: SearchRequest, hits: list[Hit], exclude_file: int | None, relevance_of: Relevance | None = None
) -> list[Hit]:
    """Every hit a page may show, in order: the query's own file dropped, thresholds, distinct moments."""
    hits = [h for h in hits if h.file_id != exclude_file and _passes(req, h, relevance_of)]
    return distinct_moments(hits) if req.segments else hits


def paging_reach(req: SearchRequest) -> int:
    """How deep paging can go: the last hit of a page at the deepest offset allowed."""
    return max(req.offset, req.max_offset) + req.limit


def reach_request(req: SearchRequest) -> SearchRequest:
    """``req`` at the deepest page: its candidates hold every hit ``total`` may count."""
    return replace(req, offset=paging_reach(req) - req.limit)


def known_total(
    req: SearchRequest,
    hits: list[Hit],
    k: int,
    exclude_file: int | None,
    relevance_of: Relevance | None,
    *,
    index_size: int,
    allowed: np.ndarray | None,
    mode: str = "audio",
) -> int | None:
    """``total`` where this page's ``k`` candidates (best first) or the index's size show it, else
    None: (1) fewer than ``k`` came back, or (files) the last one fails a threshold (thresholds
    grow with the score, so no later one passes): the candidates held every hit; (2) a files
    search without thresholds: every vector passing the filters (``allowed``, else the whole
    index of ``index_size``) but the query's own is a hit. A moment search merges two rankings
    (windows and short files), so only (1)'s first rule tells its end. With words in the ranking
    (``mode`` hybrid or text) hits are not in score order, so the threshold rule does not hold,
    and a words-only search matches only the files that hold a query word, not the whole index."""
    reach = paging_reach(req)
    by_score = mode == "audio" and not req.segments
    ended_by_threshold = by_score and bool(hits) and not _passes(req, hits[-1], relevance_of)
    if len(hits) < k or ended_by_threshold:
        return min(reach, len(passing_hits(req, hits, exclude_file, relevance_of)))
    if req.segments or req.min_score is not None or req.min_relevance is not None or mode == "text":
        return None
    if allowed is None:
        searchable = index_size - (exclude_file is not None)
    else:
        i = int(np.searchsorted(allowed, exclude_file)) if exclude_file is not None else len(allowed)
        searchable = len(allowed) - (i < len(allowed) and int(allowed[i]) == exclude_file)
    return min(reach, searchable)


def total_hits(
    req: SearchRequest, deep_hits: list[Hit], exclude_file: int | None, relevance_of: Relevance | None
) -> int:
    """``total`` from the hits of the search for ``reach_request(req)``'s candidates."""
    return min(paging_reach(req), len(passing_hits(req, deep_hits, exclude_file, relevance_of)))
