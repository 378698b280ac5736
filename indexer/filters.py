"""Search filters (duration, format, tags, path prefix, tempo, key), applied WITH the search,
for the CLI (``indexer search --tag rain``) and the API (``/v1/search?tag=rain``) alike.

The matching row ids are selected in SQL and handed to FAISS as an allowed-id set
(``VectorIndex.search(allowed_ids=...)``), so a filtered query still returns ``limit`` hits when
only 1 % of the library matches, instead of filtering ten results down to none afterwards.

Tags: ``tag=rain`` matches a file whose any tag value contains "rain" (case-insensitive);
``tag=genre:ambient`` only its ``genre`` tag. SQL narrows candidates by the text of the tag
column, Python checks the exact rule (JSON functions differ between SQLite and PostgreSQL).

Tempo and key (``bpm_min=118&bpm_max=122&key=A minor``) match the files' current analysis
(``indexer analyze``): a file never analysed, or with no steady beat or tonal centre, has no
tempo or key and is left out by these filters. ``key`` takes any common spelling ("Am",
"a min", "Gb major"); a note alone means either mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import String, cast, func, select

from indexer.analysis.keys import keys_matching
from indexer.errors import FilterLimitError, FilterValueError
from indexer.store.analyses import current
from indexer.store.schema import STATUS_INDEXED, File, FileAnalysis, Segment

if TYPE_CHECKING:
    from indexer.store.db import Database

# Each tag is one LIKE and each format one IN value in a single SQL expression: about 1,000 tags
# went past SQLite's expression depth and failed the request as a database error. No real query
# needs more than a handful, so bound them where a filter is made (API and CLI alike).
MAX_FILTER_VALUES = 32
MAX_FILTER_CHARS = 200
MAX_BPM = 1000.0


@dataclass(frozen=True)
class SearchFilters:
    min_duration: float | None = None
    max_duration: float | None = None
    formats: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    path_prefix: str | None = None
    bpm_min: float | None = None
    bpm_max: float | None = None
    key_name: str | None = None  # the musical key, in any spelling keys_matching() reads

    def __post_init__(self) -> None:
        for name, bpm in (("bpm_min", self.bpm_min), ("bpm_max", self.bpm_max)):
            if bpm is not None and not 0 <= bpm <= MAX_BPM:  # also refuses NaN
                raise FilterValueError(f"{name} must be between 0 and {MAX_BPM:g}, not {bpm}")
        if self.bpm_min is not None and self.bpm_max is not None and self.bpm_min > self.bpm_max:
            raise FilterValueError(f"bpm_min {self.bpm_min:g} is above bpm_max {self.bpm_max:g}")
        if self.key_name is not None:
            keys_matching(self.key_name)  # refuses what is no key, here where the filter is made
        for name, values in (("tag", self.tags), ("format", self.formats)):
            if len(values) > MAX_FILTER_VALUES:
                raise FilterLimitError(f"{len(values)} {name} filters; at most {MAX_FILTER_VALUES} per query")
            if any(len(v) > MAX_FILTER_CHARS for v in values):
                raise FilterLimitError(f"a {name} filter is longer than {MAX_FILTER_CHARS} characters")
        if self.path_prefix is not None and len(self.path_prefix) > 4096:
            raise FilterLimitError("path_prefix is longer than 4096 characters")

    @property
    def active(self) -> bool:
        return bool(
            self.min_duration is not None
            or self.max_duration is not None
            or self.formats
            or self.tags
            or self.path_prefix
            or self.bpm_min is not None
            or self.bpm_max is not None
            or self.key_name
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The stored key names ``key_name`` matches (empty: no key filter)."""
        return keys_matching(self.key_name) if self.key_name else ()

    def key(self) -> str:
        return repr(
            (
                self.min_duration,
                self.max_duration,
                sorted(f.upper() for f in self.formats),
                sorted(self.tags),
                self.path_prefix,
                self.bpm_min,
                self.bpm_max,
                self.keys,
            )
        )


def _tag_rule(tag: str) -> tuple[str | None, str]:
    key, sep, value = tag.partition(":")
    if sep and key.strip() and value.strip():
        return key.strip().lower(), value.strip().lower()
    return None, tag.strip().lower()


def _tags_match(tags: dict | None, rules: list[tuple[str | None, str]]) -> bool:
    if not tags:
        return False
    lowered = {str(k).lower(): str(v).lower() for k, v in tags.items()}
    for key, value in rules:
        values = [lowered.get(key, "")] if key else list(lowered.values())
        if not any(value in v for v in values):
            return False
    return True


def allowed_ids(db: Database, collection_id: int, kind: str, filters: SearchFilters) -> np.ndarray:
    """Sorted ids (files.id, or segments.id for ``kind="segments"``) of rows passing ``filters``."""
    where = [File.collection_id == collection_id, File.status == STATUS_INDEXED]
    if filters.min_duration is not None:
        where.append(File.duration_s >= filters.min_duration)
    if filters.max_duration is not None:
        where.append(File.duration_s <= filters.max_duration)
    if filters.formats:
        where.append(func.upper(File.format).in_([f.upper() for f in filters.formats]))
    if filters.path_prefix:
        prefix = filters.path_prefix
        where.append(func.substr(File.path, 1, len(prefix)) == prefix)
    musical = filters.bpm_min is not None or filters.bpm_max is not None or bool(filters.keys)
    if filters.bpm_min is not None:
        where.append(FileAnalysis.tempo_bpm >= filters.bpm_min)
    if filters.bpm_max is not None:
        where.append(FileAnalysis.tempo_bpm <= filters.bpm_max)
    if filters.keys:
        where.append(FileAnalysis.key.in_(filters.keys))
    rules = [_tag_rule(t) for t in filters.tags if t.strip()]
    for _, value in rules:
        if not value.isascii():  # stored JSON escapes non-ASCII (\u00e9): only Python can match it
            continue
        where.append(func.lower(cast(File.tags, String)).contains(value, autoescape=True))
    id_column = File.id if kind == "files" else Segment.id
    columns = [id_column, File.tags] if rules else [id_column]
    query = select(*columns).select_from(File)
    if musical:  # only an analysis of the file's present content counts
        query = query.join(FileAnalysis, current())
    if kind == "segments":
        query = query.join(Segment, Segment.file_id == File.id)
    query = query.where(*where)
    with db.session() as s:
        rows = s.execute(query).all()
    ids = [row[0] for row in rows if not rules or _tags_match(row[1], rules)]
    return np.asarray(sorted(ids), np.int64)
