"""Words for search: a full-text index over what a library's files are called, fused with the
vector ranking ("words plus sound").

What is indexed (``files.words``, computed in Python at every write, so SQLite and PostgreSQL
see the same words): the file name and its last ``FOLDER_DEPTH`` folder names, split into words
(``dog_bark_close-02.wav`` and ``DogBarkClose.flac`` both give ``dog bark close``; numbers alone
are dropped), and the values of the file's tags, which hold its embedded metadata (title,
comment, genre... read by ``indexer.ingest.metadata``). Folders above ``FOLDER_DEPTH`` (``/home``,
``/srv/library``) name the whole library, not a sound.

The index itself lives in the database, kept in sync by the database:

- SQLite (the embedded default): an FTS5 table ``files_fts`` over ``files.words`` (external
  content, ``porter unicode61`` tokenizer: "barking" finds "bark"), with triggers on insert,
  update of ``words`` and delete (cascades included);
- PostgreSQL: a GIN index on ``to_tsvector('english', words)`` (English stemming too).

Both rank the same way: the summed BM25 inverse document frequency of the query words a file
holds, so a word every file carries (a folder called "sfx") cannot outrank a rare one.

Fusion is reciprocal rank fusion: ``1 / (c + audio_rank) + 1 / (c + text_rank)`` over the top
``FUSION_DEPTH`` of each list, a file missing from a list adding nothing for it, ties broken by
the cosine. ``RRF_CONSTANT`` was chosen on the evaluation's tuning queries (the scratch package)
and R@10 reported on the held-out packages' queries (``bench/hybrid.py``, ``bench/RESULTS.md``). A query none of whose words is
in the index gives an empty text list, so hybrid search is then exactly audio search.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import text as sql

if TYPE_CHECKING:
    from indexer.store.db import Database

MODES = ("hybrid", "audio", "text")
FOLDER_DEPTH = 3  # folders above the file whose names are indexed
FUSION_DEPTH = 30  # hits taken from each ranking before fusing (rank 30 adds 1/32, rank 1 1/3)
RRF_CONSTANT = 2.0  # chosen on the tuning queries of bench/hybrid.py (scratch), see bench/RESULTS.md
MAX_QUERY_WORDS = 32
MAX_WORDS_CHARS = 4000  # a file's indexed words (long comments are cut)
FTS_TABLE = "files_fts"
PG_INDEX = "ix_files_words_fts"
PG_CONFIG = "english"
_PAGE = 500  # ids per collection check (SQLite's default limit is 999 variables)

# Common English words that name no sound: a query "the sound of a dog" must not match every
# file whose folder is called "the". The PostgreSQL 'english' configuration drops these too.
STOPWORDS = frozenset(
    "a an and are as at be by for from has in into is it its of on or over that the this to under "
    "with without sound sounds noise some very".split()
)

_TOKENS = re.compile(r"[^\W_]+")  # letters and digits, any script; _ - . / and spaces split
_CASE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


def split_words(text: str) -> list[str]:
    """Lower-case words of a name: ``DogBarkClose-02`` -> ``dog bark close 02``."""
    out: list[str] = []
    for token in _TOKENS.findall(text):
        out.extend(part.lower() for part in _CASE.split(token) if part)
    return out


def words_for(path: str, tags: Mapping | None) -> str:
    """What the full-text index holds for one file (``files.words``)."""
    parts = re.split(r"[\\/]", path.rstrip("/\\"))
    name = parts[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    folders = [p for p in parts[:-1] if p and "://" not in p and not p.endswith(":")][-FOLDER_DEPTH:]
    words = split_words(stem)
    for folder in folders:
        words += split_words(folder)
    for value in (tags or {}).values():
        words += split_words(str(value))
    kept = [w for w in words if not w.isdigit()]
    return " ".join(kept)[:MAX_WORDS_CHARS]


def query_words(text: str) -> list[str]:
    """A query's searchable words: split like names, stop words and bare numbers dropped."""
    seen: dict[str, None] = {}
    for word in split_words(text):
        if word not in STOPWORDS and not word.isdigit() and len(word) > 1:
            seen[word] = None
    return list(seen)[:MAX_QUERY_WORDS]


# ----------------------------------------------------------------------------- the text ranking


def text_ranking(
    db: Database, collection_id: int, text: str, depth: int, allowed: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """Up to ``depth`` (file id, text score) of indexed files matching any of ``text``'s words,
    best first; ``allowed`` (sorted ids, the filters' answer) keeps only those files.

    A file's score is the summed BM25 inverse document frequency of the query words it holds
    (binary term frequency: a name says "dog" once). Each word is one index lookup returning
    ids, and the scoring is numpy: a ranking function inside the SQL (FTS5's bm25) cost 20 ms
    at 100 000 files, the lookups ~1 ms (bench/RESULTS.md)."""
    words = query_words(text)
    if not words or depth <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    with db.session() as s:
        matches = [_matching_ids(s, db.dialect, collection_id, word) for word in words]
        if not any(len(m) for m in matches):
            return []
        ceiling = max(1, int(s.execute(sql("SELECT max(id) FROM files")).scalar() or 1))  # ~ files in the index
        ids, scores = _scored(matches, ceiling)
        if allowed is not None:  # the filters' ids are this collection's indexed files already
            keep = np.isin(ids, allowed)
            ids, scores = ids[keep], scores[keep]
        elif db.dialect == "sqlite":  # FTS5 knows no collection: check the best in pages
            return _in_collection(s, collection_id, ids, scores, depth)
    return list(zip(ids[:depth].tolist(), scores[:depth].tolist()))


def _matching_ids(s, dialect: str, collection_id: int, word: str) -> np.ndarray:
    if dialect == "sqlite":  # rowids only: a JOIN here made SQLite scan files and probe FTS5 per row
        statement = f"SELECT group_concat(rowid, ',') FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
        cursor = s.connection().connection.cursor()
        try:  # one string parsed by numpy: a Python object per id cost more than the lookup itself
            joined = cursor.execute(statement, (f'"{word}"',)).fetchone()[0]
        finally:
            cursor.close()
        return np.fromstring(joined or "", dtype=np.int64, sep=",")
    if dialect == "postgresql":
        found = s.execute(
            sql(
                f"SELECT id FROM files WHERE to_tsvector('{PG_CONFIG}', coalesce(words, '')) "
                f"@@ plainto_tsquery('{PG_CONFIG}', :w) AND collection_id = :c AND status = 'indexed'"
            ),
            {"w": word, "c": collection_id},
        ).scalars()
        return np.asarray(found.all(), np.int64)
    return np.empty(0, np.int64)  # another database: no words index, the text ranking is empty (hybrid = audio)


def _raw_ids(s, statement: str, params: tuple) -> np.ndarray:
    """One column of ids through the DB-API cursor: SQLAlchemy's row objects cost more than the
    FTS5 lookup itself for a word a few thousand files share."""
    cursor = s.connection().connection.cursor()
    cursor.row_factory = _first  # plain ints, not tuples: numpy takes them at C speed
    try:
        rows = cursor.execute(statement, params).fetchall()
    finally:
        cursor.close()
    return np.asarray(rows, np.int64)


def _first(_cursor, row: tuple):
    return row[0]


def _scored(matches: list[np.ndarray], n_files: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids holding any word, best first (ties by id), with their summed IDF."""
    idf = [math.log(1 + (n_files - len(m) + 0.5) / (len(m) + 0.5)) for m in matches]
    ids = np.concatenate(matches)
    weights = np.concatenate([np.full(len(m), w) for m, w in zip(matches, idf)])
    unique, where = np.unique(ids, return_inverse=True)
    scores = np.bincount(where, weights=weights)
    order = np.lexsort((unique, -np.round(scores, 9)))
    return unique[order], scores[order]


def _in_collection(s, collection_id: int, ids: np.ndarray, scores: np.ndarray, depth: int) -> list[tuple[int, float]]:
    """The best ``depth`` of ``ids`` that are this collection's indexed files, checked in pages."""
    kept_ids, kept_scores = [], []
    start, page, n = 0, min(2 * depth, _PAGE), 0
    while start < len(ids) and n < depth:
        chunk = ids[start : start + page]
        marks = ",".join("?" * len(chunk))
        found = _raw_ids(
            s,
            f"SELECT id FROM files WHERE id IN ({marks}) AND collection_id = ? AND status = 'indexed'",
            (*chunk.tolist(), collection_id),
        )
        keep = np.isin(chunk, found)
        kept_ids.append(chunk[keep])
        kept_scores.append(scores[start : start + page][keep])
        n += int(keep.sum())
        start, page = start + len(chunk), min(4 * page, _PAGE)  # another collection's files: look further
    if not kept_ids:
        return []
    return list(zip(np.concatenate(kept_ids)[:depth].tolist(), np.concatenate(kept_scores)[:depth].tolist()))


# ----------------------------------------------------------------------------- fusion


def fuse(
    audio: Sequence[int], text: Sequence[int], cosines: Mapping[int, float], constant: float = RRF_CONSTANT
) -> list[int]:
    """Reciprocal rank fusion of two rankings of file ids (best first), ties broken by cosine."""
    fused: dict[int, float] = {}
    for ranking in (audio, text):
        for rank, file_id in enumerate(ranking, start=1):
            fused[file_id] = fused.get(file_id, 0.0) + 1.0 / (constant + rank)
    return sorted(fused, key=lambda i: (-fused[i], -cosines.get(i, -2.0), i))


def text_order(ranked: Iterable[tuple[int, float]], cosines: Mapping[int, float]) -> list[int]:
    """Text mode's order: the text score, then the cosine among files the words rank equally."""
    return [i for i, score in sorted(ranked, key=lambda h: (-round(h[1], 9), -cosines.get(h[0], -2.0), h[0]))]
