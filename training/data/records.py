"""The unit of training data: one audio clip with its texts, wherever it was listed.

Every reader (our JSONL/CSV manifests, AudioCaps, Clotho, WebDataset shards) produces the same
:class:`ClipRecord`, so the dataset, the caption policy and evaluation never care where a clip came
from. Each record remembers its manifest file and line, so a bad clip met hours into a run can be
reported as ``manifest.jsonl:1234`` instead of an anonymous index.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from indexer.audio.decode import DecodeLimits, probe
from indexer.errors import AudioError, DataManifestError

# Separator between a shard path and a member name in ``ClipRecord.audio``.
TAR_MEMBER_SEP = ".tar#"


@dataclass(frozen=True)
class ClipRecord:
    """One clip and what describes it.

    ``audio`` is a file path, or ``"path/to/shard.tar#member_name"`` for a member of a tar shard.
    ``captions`` are full sentences; ``tags`` are keywords (they can become a caption through
    keyword-to-caption augmentation); ``labels`` are class names for zero-shot and linear probes.
    """

    audio: str
    captions: tuple[str, ...]
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    split: str | None = None
    source: str = ""
    line: int = 0
    licence: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def where(self) -> str:
        """``source:line`` for messages (just the audio reference when the source is unknown)."""
        return f"{self.source}:{self.line}" if self.source else self.audio


def split_tar_ref(audio: str) -> tuple[str, str] | None:
    """Split ``"a/b.tar#member"`` into ``("a/b.tar", "member")``; None for plain paths.

    Only ``.tar#`` counts as the separator, so a file that merely has ``#`` in its name stays a
    plain path.
    """
    at = audio.find(TAR_MEMBER_SEP)
    if at < 0:
        return None
    cut = at + len(TAR_MEMBER_SEP) - 1
    return audio[:cut], audio[cut + 1 :]


def tar_ref(shard: str, member: str) -> str:
    return f"{shard}#{member}"


@dataclass(frozen=True)
class ManifestIssue:
    """A line of a manifest that could not become a record, and why."""

    source: str
    line: int  # 1-based line/row/sample number in ``source``; 0 for the file as a whole
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


# ----------------------------------------------------------------------------- row checks
# shared by every manifest reader (training.data.readers, training.data.public_readers)
OnError = Literal["skip", "fail"]
Result = tuple[list[ClipRecord], list[ManifestIssue]]
CAPTION_N = re.compile(r"caption_(\d+)")
TAG_SEP = re.compile(r"[;,]")


@dataclass
class RowChecker:
    """What every row of one file is checked against, and where its issues go."""

    source: str
    on_error: OnError
    base_dir: Path
    split: str | None = None
    check_audio: bool = True
    probe_audio: bool = False
    limits: DecodeLimits | None = None
    issues: list[ManifestIssue] = field(default_factory=list)
    records: list[ClipRecord] = field(default_factory=list)  # the rows that passed, in order

    def issue(self, line: int, reason: str) -> None:
        problem = ManifestIssue(self.source, line, reason)
        if self.on_error == "fail":
            raise DataManifestError(str(problem), problem)
        self.issues.append(problem)

    def resolve(self, audio: str) -> str:
        """Absolute-ise ``audio`` (or the shard part of a tar reference) against ``base_dir``."""
        ref = split_tar_ref(audio)
        path = Path(os.path.expanduser(ref[0] if ref else audio))
        path = path if path.is_absolute() else self.base_dir / path
        return tar_ref(str(path), ref[1]) if ref else str(path)

    def audio_problem(self, audio: str) -> str | None:
        ref = split_tar_ref(audio)
        target = ref[0] if ref else audio
        if not os.path.isfile(target):
            return f"audio file not found: {target}"
        if self.probe_audio and ref is None:
            try:
                probe(target, limits=self.limits)
            except AudioError as exc:
                return f"audio cannot be used: {exc.reason} ({target})"
        return None

    def record(
        self,
        line: int,
        audio: str,
        captions: Sequence[str],
        tags: Sequence[str] = (),
        labels: Sequence[str] = (),
        split: str | None = None,
        licence: str | None = None,
        meta: dict | None = None,
    ) -> ClipRecord | None:
        """Validate one row's fields and keep the record in ``records``; None (after reporting) when
        it cannot be used."""
        if not audio.strip():
            return self.issue(line, "'audio' is empty")
        if any(not c.strip() for c in captions):
            return self.issue(line, "empty caption")
        captions = tuple(dict.fromkeys(c.strip() for c in captions))
        tags = tuple(dict.fromkeys(t for t in tags if t))
        if not captions and not tags:
            return self.issue(line, "no caption and no tags")
        path = self.resolve(audio.strip())
        problem = self.audio_problem(path) if self.check_audio else None
        if problem:
            return self.issue(line, problem)
        rec = ClipRecord(
            path, captions, tags, tuple(labels), split or self.split, self.source, line, licence or None, meta or {}
        )
        self.records.append(rec)
        return rec


def split_list(value, sep: re.Pattern, what: str) -> list[str]:
    """A JSON list of strings, or one string split on ``sep``; stripped, empties dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in sep.split(value) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ValueError(f"'{what}' must be a string or a list of strings")


class RowChecks(TypedDict, total=False):
    """The keyword options every reader takes, passed on to :class:`RowChecker`: ``split`` fills
    rows that have none; ``on_error`` is ``"skip"`` (the default) or ``"fail"``; ``check_audio``,
    ``probe_audio`` and ``limits`` say how far each row's audio is checked."""

    split: str | None
    on_error: OnError
    check_audio: bool
    probe_audio: bool
    limits: DecodeLimits | None


def row_checker(path: str | Path, audio_dir, *, on_error: OnError = "skip", **checks) -> RowChecker:
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    unknown = sorted(set(checks) - set(RowChecks.__annotations__))
    if unknown:  # a reader's own options never reach here; anything else is a caller's typo
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    base = Path(audio_dir) if audio_dir is not None else Path(path).resolve().parent
    return RowChecker(str(path), on_error, base, **checks)


def wrong_columns(source: str, found: Sequence[str], expected: str) -> DataManifestError:
    issue = ManifestIssue(source, 1, f"wrong columns: found {', '.join(found) or '(none)'}; expected {expected}")
    return DataManifestError(str(issue), issue)


def csv_rows(path: str | Path, required: Iterable[str], expected: str):
    """(header, iterator of (line, row)) after checking the required columns are present."""
    fh = open(path, newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if not set(required) <= set(header):
        fh.close()
        raise wrong_columns(str(path), header, expected)

    def rows():
        with fh:
            for row in reader:
                yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}

    return header, rows()
