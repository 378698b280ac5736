"""Near-duplicates: files of a collection that are the same recording in another encoding,
sample rate, gain, trim or length, found by vector similarity and grouped.

    report = find_duplicates(store, "default", threshold=0.97)
    for group in report.groups:
        print(group.reason, [m.path for m in group.members])

The criterion is the cosine similarity of the files' vectors (the model hears a re-encode, a
gain change or a trim as the same sound): every pair at or above ``threshold`` is an edge, and
the groups are the connected components (union-find), so A~B and B~C put A, B and C together
even when A~C falls just below. Pairs come from a FAISS range search (``IndexFlatIP.range_search``
over the collection's vectors, in blocks of queries): no n x n score matrix is ever held.

The reason says what differs, from what the store already knows (format, sample rate, channels,
duration, size), and whether two members are byte-identical copies (the stored sha256,
``content_hash``): a content fingerprint that costs nothing. Decoding audio again to compare
envelopes would not be cheap and is not done.

Incremental: the pairs found are cached per collection in ``<index_dir>/<collection>/duplicates.json``
with the collection's ``generation`` (every ingest and removal bumps it), the model fingerprint,
the threshold they were found at and the ids they cover. A call with nothing changed reads the
cache (no vector is loaded); after an ingest only the files written since are searched against
the collection (``new x all`` instead of ``all x all``) and pairs of removed or re-written files
are dropped. A cache found at a lower threshold serves any higher one (its pairs are filtered);
a lower threshold than the cache's recomputes everything.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from indexer.errors import QueryError
from indexer.store import vector_rows
from indexer.store.schema import File

if TYPE_CHECKING:
    from indexer.store.store import Store

# Chosen on generated variants (bench/duplicates.py, bench/RESULTS.md "Near-duplicates").
DEFAULT_THRESHOLD = 0.95
CACHE_NAME = "duplicates.json"
CACHE_VERSION = 1
_QUERY_BLOCK = 4096  # queries per range_search call: bounds the result buffers
_SAME_LENGTH_S = 0.2
IVF_MIN_VECTORS = 50_000  # below: the exact range search takes seconds; above: the inverted file
IVF_NPROBE = 16


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    duration_s: float | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    size: int


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    score: float


@dataclass
class Group:
    members: list[Member]
    pairs: list[Pair]  # every pair of members at or above the threshold
    score_min: float
    score_max: float
    identical: list[list[int]]  # ids of byte-identical members (same sha256), two or more each
    differences: list[str]  # which stored properties differ: format, sample_rate, channels, duration, size
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DuplicateReport:
    collection: str
    threshold: float
    groups: list[Group]
    n_files: int
    n_pairs: int
    mode: str  # "cached", "incremental" or "full"
    searched: int  # vectors used as queries this call (0 when cached)
    seconds: float = 0.0
    generation: int = 0
    extra: dict = field(default_factory=dict)


def check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise QueryError(f"threshold must be a number in (0, 1], not {threshold!r}") from None
    if not (0.0 < value <= 1.0) or value != value:
        raise QueryError(f"threshold must be a cosine similarity in (0, 1] (e.g. {DEFAULT_THRESHOLD}), not {value}")
    return value


# --------------------------------------------------------------------------- pairs


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, np.float32)


def range_pairs(
    base_ids: np.ndarray,
    base: np.ndarray,
    query_ids: np.ndarray,
    queries: np.ndarray,
    threshold: float,
    *,
    exact: bool | None = None,
) -> dict[tuple[int, int], float]:
    """Pairs (low id, high id) -> cosine of every query vector with every base vector at or above
    ``threshold`` (self-pairs excluded), by FAISS range search: on an exact inner-product index, or
    (``exact=False``; by default from ``IVF_MIN_VECTORS`` vectors searched against as many) on an
    inverted file that compares each query with a few lists of vectors instead of all of them."""
    import faiss

    out: dict[tuple[int, int], float] = {}
    if not len(base) or not len(queries):
        return out
    x = _normalised(base)
    if exact is None:
        exact = len(base) < IVF_MIN_VECTORS or len(queries) < IVF_MIN_VECTORS // 10
    if exact:
        index: faiss.Index = faiss.IndexFlatIP(x.shape[1])
    else:
        # past brute force: an inverted file (4*sqrt(n) lists, as the published indexes use), searched
        # in IVF_NPROBE lists per query; a near-duplicate lies next to its original, in the same list
        # or a neighbouring one (bench/RESULTS.md: recall of the pairs against the exact search)
        nlist = max(1, min(4096, 1 << int(round(np.log2(4 * np.sqrt(len(x)))))))
        quantizer = faiss.IndexFlatIP(x.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        sample = x[np.random.default_rng(0).choice(len(x), min(len(x), 20 * nlist), replace=False)]
        ivf.cp.niter = 10
        ivf.cp.min_points_per_centroid = 16  # 20 per list is enough to place the lists
        ivf.train(sample)
        ivf.nprobe = IVF_NPROBE
        index = ivf
    index.add(x)
    q_all = _normalised(queries)
    # a hair below: a pair scored exactly at the threshold by numpy must not be lost to float rounding
    radius = float(threshold) - 1e-6
    for start in range(0, len(q_all), _QUERY_BLOCK):
        q = q_all[start : start + _QUERY_BLOCK]
        lims, scores, found = index.range_search(q, radius)
        for row in range(len(q)):
            a = int(query_ids[start + row])
            for j in range(lims[row], lims[row + 1]):
                b = int(base_ids[found[j]])
                score = min(1.0, float(scores[j]))
                if a == b or score < threshold - 1e-6:
                    continue
                out[(a, b) if a < b else (b, a)] = score
    return out


def brute_force_pairs(ids: np.ndarray, vectors: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    """The reference: the full n x n score matrix with numpy (bench and tests only)."""
    x = _normalised(vectors)
    sims = x @ x.T
    rows, cols = np.nonzero(np.triu(sims >= threshold - 1e-6, k=1))
    return {
        (int(min(ids[r], ids[c])), int(max(ids[r], ids[c]))): min(1.0, float(sims[r, c])) for r, c in zip(rows, cols)
    }


def group_pairs(pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (union-find) of the pairs' graph, each sorted, largest first."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    components: dict[int, list[int]] = {}
    for x in list(parent):
        components.setdefault(find(x), []).append(x)
    return sorted((sorted(c) for c in components.values()), key=lambda c: (-len(c), c[0]))


# --------------------------------------------------------------------------- cache


def cache_path(store: Store, collection: str) -> Path:
    return Path(store.index_dir) / collection / CACHE_NAME


def _read_cache(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or damaged: recompute
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    return data


def _write_cache(path: Path, data: dict) -> None:
    """Write aside and rename (atomic): a concurrent reader sees the old cache or the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only index folder: the answer is still right, only the next call is slower


# --------------------------------------------------------------------------- the finder


def _load_vectors(store: Store, collection_id: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    pages = list(vector_rows.iter_vectors(store.db, collection_id, "files", ids=ids))
    if not pages:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate([p[0] for p in pages]), np.concatenate([p[1] for p in pages])


def find_pairs(store: Store, collection: str, threshold: float, *, use_cache: bool = True) -> tuple[dict, dict]:
    """(pairs (a, b) -> score at or above ``threshold``, facts: mode, searched, n_files, generation)."""
    threshold = check_threshold(threshold)
    target = store.collection(collection)  # CollectionNotFoundError: unknown name
    live = vector_rows.live_ids(store.db, target.id, "files")
    path = cache_path(store, target.name)
    cache = _read_cache(path) if use_cache else None
    usable = (
        cache is not None
        and cache.get("fingerprint") == target.model_fingerprint
        and cache.get("collection_id") == target.id
        and float(cache.get("threshold", 2.0)) <= threshold + 1e-9
        and int(cache.get("generation", -1)) <= int(target.generation)
    )
    facts: dict = {"n_files": int(len(live)), "generation": int(target.generation), "searched": 0}
    if usable and cache is not None:
        cached = {(int(a), int(b)): float(s) for a, b, s in cache["pairs"]}
        if int(cache["generation"]) == int(target.generation) and cache.get("n_ids") == len(live):
            facts["mode"] = "cached"
            return {k: s for k, s in cached.items() if s >= threshold - 1e-6}, facts
        # incremental: files written since the cache (new or re-written), and files gone since
        fresh = np.intersect1d(
            vector_rows.ids_written_after(store.db, target.id, "files", int(cache["generation"])), live
        )
        gone = np.setdiff1d(np.asarray(cache.get("ids", []), np.int64), live)
        stale = set(fresh.tolist()) | set(gone.tolist())
        pairs = {k: s for k, s in cached.items() if k[0] not in stale and k[1] not in stale}
        base_threshold = float(cache["threshold"])
        if len(fresh):
            ids, vectors = _load_vectors(store, target.id)
            position = {int(i): n for n, i in enumerate(ids)}
            rows = np.asarray([position[int(i)] for i in fresh if int(i) in position], np.int64)
            pairs.update(range_pairs(ids, vectors, ids[rows], vectors[rows], base_threshold))
        facts.update(mode="incremental", searched=int(len(fresh)))
    else:
        base_threshold = threshold
        ids, vectors = _load_vectors(store, target.id)
        pairs = range_pairs(ids, vectors, ids, vectors, base_threshold)
        facts.update(mode="full", searched=int(len(ids)))
    _write_cache(
        path,
        {
            "version": CACHE_VERSION,
            "collection": target.name,
            "collection_id": target.id,
            "fingerprint": target.model_fingerprint,
            "generation": int(target.generation),
            "threshold": base_threshold,
            "n_ids": int(len(live)),
            "ids": live.tolist(),
            "pairs": [[a, b, round(s, 6)] for (a, b), s in sorted(pairs.items())],
        },
    )
    return {k: s for k, s in pairs.items() if s >= threshold - 1e-6}, facts


def _members(store: Store, ids: list[int]) -> dict[int, tuple[Member, str | None]]:
    out: dict[int, tuple[Member, str | None]] = {}
    for i in range(0, len(ids), 500):
        with store.db.session() as s:
            rows = s.execute(
                select(
                    File.id,
                    File.path,
                    File.duration_s,
                    File.format,
                    File.sample_rate,
                    File.channels,
                    File.size,
                    File.content_hash,
                ).where(File.id.in_(ids[i : i + 500]))
            ).all()
        for r in rows:
            out[int(r[0])] = (Member(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6] or 0)), r[7])
    return out


def _explain(members: list[Member], hashes: dict[int, str | None], lo: float, hi: float) -> tuple[list, list, str]:
    by_hash: dict[str, list[int]] = {}
    for m in members:
        if hashes.get(m.id):
            by_hash.setdefault(str(hashes[m.id]), []).append(m.id)
    identical = [sorted(v) for v in by_hash.values() if len(v) > 1]
    parts = [f"vector similarity {lo:.3f}" + (f"-{hi:.3f}" if hi - lo >= 0.0005 else "")]
    if identical and len(identical[0]) == len(members):
        parts.append("byte-identical copies (same sha256)")
    elif identical:
        parts.append(f"{sum(len(g) for g in identical)} of them byte-identical (same sha256)")
    differences = []
    durations = [m.duration_s for m in members if m.duration_s is not None]
    if durations:
        spread = max(durations) - min(durations)
        if spread <= _SAME_LENGTH_S:
            parts.append(f"same length ±{_SAME_LENGTH_S:.1f} s ({min(durations):.2f} s)")
        else:
            differences.append("duration")
            parts.append(f"lengths {min(durations):.2f}-{max(durations):.2f} s (trimmed or extended)")
    for name, label, unit in (
        ("format", "formats", ""),
        ("sample_rate", "sample rates", " Hz"),
        ("channels", "channels", ""),
    ):
        values = sorted({getattr(m, name) for m in members if getattr(m, name) is not None}, key=str)
        if len(values) > 1:
            differences.append(name)
            parts.append(f"different {label} ({', '.join(str(v) for v in values)}{unit})")
        elif values and name == "format":
            parts.append(f"same format ({values[0]})")
    if len({m.size for m in members}) > 1:
        differences.append("size")
    return identical, differences, "; ".join(parts)


def find_duplicates(
    store: Store,
    collection: str = "default",
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_group: int = 2,
    use_cache: bool = True,
) -> DuplicateReport:
    """Groups of near-duplicate files of ``collection``: largest first, then most similar."""
    started = time.perf_counter()
    threshold = check_threshold(threshold)
    if not isinstance(min_group, int) or min_group < 2:
        raise QueryError(f"min_group must be an integer >= 2, not {min_group!r}")
    pairs, facts = find_pairs(store, collection, threshold, use_cache=use_cache)
    components = [c for c in group_pairs(pairs) if len(c) >= min_group]
    rows = _members(store, sorted({i for c in components for i in c}))
    groups = []
    for component in components:
        present = [i for i in component if i in rows]  # a file removed since: gone from the answer
        if len(present) < min_group:
            continue
        keep = set(present)
        edges = [Pair(a, b, round(s, 4)) for (a, b), s in sorted(pairs.items()) if a in keep and b in keep]
        if not edges:
            continue
        members = sorted((rows[i][0] for i in present), key=lambda m: m.path)
        lo, hi = min(e.score for e in edges), max(e.score for e in edges)
        identical, differences, reason = _explain(members, {i: rows[i][1] for i in present}, lo, hi)
        groups.append(Group(members, edges, lo, hi, identical, differences, reason))
    groups.sort(key=lambda g: (-len(g.members), -g.score_max, g.members[0].path))
    return DuplicateReport(
        collection=collection,
        threshold=threshold,
        groups=groups,
        n_files=facts["n_files"],
        n_pairs=len(pairs),
        mode=facts["mode"],
        searched=facts["searched"],
        seconds=time.perf_counter() - started,
        generation=facts["generation"],
    )


def report_dict(report: DuplicateReport, *, limit: int | None = None, offset: int = 0) -> dict:
    """The JSON form the CLI (``--json``) and the API share: ``{items, total, limit, offset, ...}``."""
    page = report.groups[offset : None if limit is None else offset + limit]
    return {
        "items": [g.as_dict() for g in page],
        "total": len(report.groups),
        "limit": limit if limit is not None else len(report.groups),
        "offset": offset,
        "collection": report.collection,
        "threshold": report.threshold,
        "files": report.n_files,
        "pairs": report.n_pairs,
        "mode": report.mode,
    }
