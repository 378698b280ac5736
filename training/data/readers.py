"""Read training listings into :class:`ClipRecord` lists, reporting bad lines instead of dying.

Every reader returns ``(records, issues)``. ``on_error="skip"`` records a :class:`ManifestIssue`
(file, 1-based line, reason) for each bad line and carries on; ``on_error="fail"`` raises
:class:`ManifestError` at the first one. A file whose columns are wrong always raises: every row
would be bad, and an empty dataset hours later is worse than an error now.

Our manifest, JSON Lines (``*.jsonl``), one object per line; blank lines are ignored::

    {"audio": "clips/dog.flac", "caption": "A dog barks twice", "tags": ["dog", "bark"]}
    {"audio": "/data/rain.wav", "captions": ["Rain on a roof", "Heavy rain"], "split": "train",
     "labels": ["Rain"], "licence": "CC-BY-4.0"}
    {"audio": "birds.ogg", "tags": "birds; dawn chorus"}

``audio`` is relative to the manifest's folder (or ``audio_dir``) unless absolute, and may name a
tar member as ``shard.tar#member.flac``. A line needs ``audio`` and a non-empty ``caption`` /
``captions`` or ``tags`` (tags can become a caption, see ``captions.keywords_to_caption``). An
empty caption string is an issue. ``tags`` is a list or a string split on ``,``/``;``; ``labels``
a list or a string split on ``;`` (class names such as "Male speech, man speaking" contain
commas). Optional: ``split``, ``licence`` (or ``license``), ``meta`` (an object). Other keys are
an issue unless ``extra="meta"``, which keeps them in ``ClipRecord.meta``.

Our manifest, CSV (``*.csv``, header row, UTF-8): the same column names; several captions go in
``caption_1 .. caption_N`` columns (empty cells allowed) or in one ``captions`` cell separated by
``|``; ``tags`` separated by ``;`` or ``,``; ``labels`` by ``;``::

    audio,caption,tags,split
    clips/dog.flac,A dog barks twice,dog;bark,train

Public layouts: AudioCaps CSV (``audiocap_id,youtube_id,start_time,caption``; rows of one clip are
grouped into one record, audio found through ``templates``), Clotho CSV
(``file_name,caption_1..caption_5``; one CSV per split, so ``split`` is an argument) and
LAION-Audio-630K WebDataset shards (``KEY.flac`` + ``KEY.json`` with ``text``/``tag``/
``original_data``; records point at ``shard.tar#KEY.flac``).

Missing audio files are issues (a cheap existence check); ``probe_audio=True`` also reads each
file's header with ``indexer.audio.decode.probe`` and reports undecodable files (not tar members).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from indexer.audio.decode import DecodeLimits, probe
from indexer.errors import AudioError
from training.data.records import ClipRecord, ManifestError, ManifestIssue, split_tar_ref, tar_ref

OnError = Literal["skip", "fail"]
Result = tuple[list[ClipRecord], list[ManifestIssue]]

AUDIO_EXTS = ("flac", "wav", "ogg", "mp3", "opus")
AUDIOCAPS_TEMPLATES = ("{youtube_id}.{ext}", "{youtube_id}_{start_time}.{ext}",
                       "Y{youtube_id}.{ext}")
_OUR_FIELDS = ("audio", "caption", "captions", "tags", "labels", "split", "licence", "license",
               "meta")
_CAPTION_N = re.compile(r"caption_(\d+)")
_TAG_SEP = re.compile(r"[;,]")
_LABEL_SEP = re.compile(r";")


@dataclass
class _Ctx:
    """What every row of one file is checked against, and where its issues go."""

    source: str
    on_error: OnError
    base_dir: Path
    split: str | None = None
    check_audio: bool = True
    probe_audio: bool = False
    limits: DecodeLimits | None = None
    issues: list[ManifestIssue] = field(default_factory=list)

    def issue(self, line: int, reason: str) -> None:
        problem = ManifestIssue(self.source, line, reason)
        if self.on_error == "fail":
            raise ManifestError(problem)
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

    def record(self, line: int, audio: str, captions: Sequence[str], tags: Sequence[str] = (),
               labels: Sequence[str] = (), split: str | None = None, licence: str | None = None,
               meta: dict | None = None) -> ClipRecord | None:
        """Validate one row's fields; None (after reporting) when it cannot be used."""
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
        return ClipRecord(path, captions, tags, tuple(labels), split or self.split, self.source,
                          line, licence or None, meta or {})


def _as_list(value, sep: re.Pattern, what: str) -> list[str]:
    """A JSON list of strings, or one string split on ``sep``; stripped, empties dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in sep.split(value) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ValueError(f"'{what}' must be a string or a list of strings")


def _ctx(path: str | Path, on_error: OnError, audio_dir, **kw) -> _Ctx:
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    base = Path(audio_dir) if audio_dir is not None else Path(path).resolve().parent
    return _Ctx(str(path), on_error, base, **kw)


def _wrong_columns(source: str, found: Sequence[str], expected: str) -> ManifestError:
    return ManifestError(ManifestIssue(
        source, 1, f"wrong columns: found {', '.join(found) or '(none)'}; expected {expected}"))


# ----------------------------------------------------------------------------- our manifest


def read_jsonl(path: str | Path, *, audio_dir: str | Path | None = None, split: str | None = None,
               on_error: OnError = "skip", extra: Literal["error", "meta"] = "error",
               check_audio: bool = True, probe_audio: bool = False,
               limits: DecodeLimits | None = None) -> Result:
    """Our JSON Lines manifest (see the module docstring); ``split`` fills rows that have none."""
    ctx = _ctx(path, on_error, audio_dir, split=split, check_audio=check_audio,
               probe_audio=probe_audio, limits=limits)
    records = []
    with open(path, encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                ctx.issue(line, f"not valid JSON ({exc.msg}, column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                ctx.issue(line, f"expected a JSON object, got {type(obj).__name__}")
                continue
            unknown = sorted(set(obj) - set(_OUR_FIELDS))
            if unknown and extra == "error":
                ctx.issue(line, f"wrong key(s) {', '.join(unknown)}; expected "
                          f"{', '.join(_OUR_FIELDS)} (pass extra='meta' to keep unknown keys)")
                continue
            try:
                captions = _json_captions(obj)
                tags = _as_list(obj.get("tags"), _TAG_SEP, "tags")
                labels = _as_list(obj.get("labels"), _LABEL_SEP, "labels")
                audio, split_v = obj.get("audio"), obj.get("split")
                licence = obj.get("licence", obj.get("license"))
                if not isinstance(audio, str):
                    raise ValueError(f"missing 'audio' (keys found: {', '.join(obj) or 'none'})")
                for name, value in (("split", split_v), ("licence", licence)):
                    if value is not None and not isinstance(value, str):
                        raise ValueError(f"'{name}' must be a string")
                meta = dict(obj.get("meta") or {})
                meta.update({k: obj[k] for k in unknown})
            except (ValueError, TypeError) as exc:
                ctx.issue(line, str(exc))
                continue
            rec = ctx.record(line, audio, captions, tags, labels, split_v, licence, meta)
            if rec is not None:
                records.append(rec)
    return records, ctx.issues


def _json_captions(obj: dict) -> list[str]:
    captions: list = []
    if "caption" in obj:
        if not isinstance(obj["caption"], str):
            raise ValueError("'caption' must be a string (use 'captions' for a list)")
        captions.append(obj["caption"])
    if "captions" in obj:
        value = obj["captions"]
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ValueError("'captions' must be a list of strings")
        captions.extend(value)
    return captions


def read_csv(path: str | Path, *, audio_dir: str | Path | None = None, split: str | None = None,
             on_error: OnError = "skip", extra: Literal["error", "meta"] = "error",
             check_audio: bool = True, probe_audio: bool = False,
             limits: DecodeLimits | None = None) -> Result:
    """Our CSV manifest (see the module docstring)."""
    ctx = _ctx(path, on_error, audio_dir, split=split, check_audio=check_audio,
               probe_audio=probe_audio, limits=limits)
    records = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        numbered = sorted((c for c in header if _CAPTION_N.fullmatch(c)),
                          key=lambda c: int(c.split("_")[1]))
        unknown = [c for c in header if c not in _OUR_FIELDS and c not in numbered]
        has_text = {"caption", "captions", "tags"} & set(header) or numbered
        if "audio" not in header or not has_text or (unknown and extra == "error"):
            raise _wrong_columns(str(path), header, "'audio', a caption column ('caption', "
                                 "'captions' or 'caption_1..caption_N') and/or 'tags'; optional "
                                 "'labels', 'split', 'licence'"
                                 + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        for row in reader:
            line = reader.line_num
            if None in row:
                ctx.issue(line, f"{len(header) + len(row[None])} fields but {len(header)} columns")
                continue
            cell = {k: (v or "").strip() for k, v in row.items()}
            captions = [cell[c] for c in ["caption", *numbered] if cell.get(c)]
            if cell.get("captions"):
                captions += cell["captions"].split("|")
            tags = _as_list(cell.get("tags"), _TAG_SEP, "tags")
            rec = ctx.record(line, cell["audio"], captions, tags,
                             _as_list(cell.get("labels"), _LABEL_SEP, "labels"), cell.get("split"),
                             cell.get("licence") or cell.get("license"),
                             {k: cell[k] for k in unknown})
            if rec is not None:
                records.append(rec)
    return records, ctx.issues


def _csv_rows(path: str | Path, required: Iterable[str], expected: str):
    """(header, iterator of (line, row)) after checking the required columns are present."""
    fh = open(path, newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if not set(required) <= set(header):
        fh.close()
        raise _wrong_columns(str(path), header, expected)

    def rows():
        with fh:
            for row in reader:
                yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}
    return header, rows()


# ----------------------------------------------------------------------------- dispatch, report


def read_audiocaps(*args, **kw) -> Result:
    """AudioCaps CSV; see :func:`training.data.public_readers.read_audiocaps`."""
    from training.data.public_readers import read_audiocaps as reader

    return reader(*args, **kw)


def read_clotho(*args, **kw) -> Result:
    """Clotho CSV; see :func:`training.data.public_readers.read_clotho`."""
    from training.data.public_readers import read_clotho as reader

    return reader(*args, **kw)


def read_webdataset(*args, **kw) -> Result:
    """LAION-630K WebDataset shards; see :func:`training.data.public_readers.read_webdataset`."""
    from training.data.public_readers import read_webdataset as reader

    return reader(*args, **kw)


def expand_shards(*args, **kw) -> list[str]:
    from training.data.public_readers import expand_shards as expand

    return expand(*args, **kw)


def read_any(path: str | Path | Sequence[str | Path], **kw) -> Result:
    """Pick the reader from the extension (and, for CSV, the header): ``.jsonl``/``.json`` ->
    :func:`read_jsonl`; ``.tar``, globs, brace patterns and lists -> :func:`read_webdataset`;
    ``.csv`` -> AudioCaps (``youtube_id`` + ``caption`` columns), Clotho (``file_name`` +
    ``caption_1``) or :func:`read_csv`. Keyword arguments go to the chosen reader."""
    if not isinstance(path, (str, Path)):
        return read_webdataset(path, **kw)
    text = str(path)
    if text.endswith(".tar") or glob.has_magic(text) or re.search(r"\{[^{}]*\}", text):
        return read_webdataset(text, **kw)
    suffix = Path(text).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, **kw)
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = {h.strip() for h in next(csv.reader(fh), [])}
        if {"youtube_id", "caption"} <= header:
            return read_audiocaps(path, **kw)
        if {"file_name", "caption_1"} <= header:
            return read_clotho(path, **kw)
        return read_csv(path, **kw)
    raise ValueError(f"{path}: cannot tell the manifest format from the extension {suffix!r} "
                     "(expected .jsonl, .json, .csv or .tar shards)")


def summarize(issues: Sequence[ManifestIssue], *, max_listed: int = 20) -> str:
    """A human report: counts per file, then the first ``max_listed`` issues."""
    if not issues:
        return "no manifest problems"
    per_file = Counter(i.source for i in issues)
    lines = [f"{len(issues)} manifest problem(s) in {len(per_file)} file(s):"]
    lines += [f"  {source}: {count}" for source, count in per_file.most_common()]
    lines += [f"  {issue}" for issue in issues[:max_listed]]
    if len(issues) > max_listed:
        lines.append(f"  ... and {len(issues) - max_listed} more")
    return "\n".join(lines)
