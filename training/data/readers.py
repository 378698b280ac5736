"""Read training listings into :class:`ClipRecord` lists, reporting bad lines instead of dying.

Every reader returns ``(records, issues)``. ``on_error="skip"`` records a :class:`ManifestIssue`
(file, 1-based line, reason) for each bad line and carries on; ``on_error="fail"`` raises
:class:`indexer.errors.DataManifestError` at the first one. A file whose columns are wrong always raises: every row
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
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from training.data.public_readers import read_audiocaps, read_clotho, read_webdataset
from training.data.records import (
    CAPTION_N,
    TAG_SEP,
    ManifestIssue,
    Result,
    RowChecker,
    RowChecks,
    row_checker,
    split_list,
    wrong_columns,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

_OUR_FIELDS = ("audio", "caption", "captions", "tags", "labels", "split", "licence", "license", "meta")
_LABEL_SEP = re.compile(r";")


# ----------------------------------------------------------------------------- our manifest


def read_jsonl(path: str | Path, **options) -> Result:
    """Our JSON Lines manifest (see the module docstring); ``options``: see :func:`read_ours`."""
    return read_ours(path, _jsonl_rows, **options)


def read_csv(path: str | Path, **options) -> Result:
    """Our CSV manifest (see the module docstring); ``options``: see :func:`read_ours`."""
    return read_ours(path, _csv_rows, **options)


def read_ours(
    path: str | Path,
    rows: Callable[[str | Path, RowChecker, str], None],
    *,
    audio_dir: str | Path | None = None,
    extra: Literal["error", "meta"] = "error",
    **checks: Unpack[RowChecks],
) -> Result:
    """Our manifest read by ``rows`` (:func:`read_jsonl`, :func:`read_csv`): relative audio paths
    are under ``audio_dir`` (default: the manifest's folder); ``extra="meta"`` keeps unknown keys
    in ``meta`` instead of reporting them; ``checks``: see :class:`RowChecks`."""
    ctx = row_checker(path, audio_dir, **checks)
    rows(path, ctx, extra)
    return ctx.records, ctx.issues


def _jsonl_rows(path: str | Path, ctx: RowChecker, extra: str) -> None:
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
                ctx.issue(
                    line,
                    f"wrong key(s) {', '.join(unknown)}; expected "
                    f"{', '.join(_OUR_FIELDS)} (pass extra='meta' to keep unknown keys)",
                )
                continue
            try:
                captions = _json_captions(obj)
                tags = split_list(obj.get("tags"), TAG_SEP, "tags")
                labels = split_list(obj.get("labels"), _LABEL_SEP, "labels")
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
            ctx.record(line, audio, captions, tags, labels, split_v, licence, meta)


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


def _csv_rows(path: str | Path, ctx: RowChecker, extra: str) -> None:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        numbered = sorted((c for c in header if CAPTION_N.fullmatch(c)), key=lambda c: int(c.split("_")[1]))
        unknown = [c for c in header if c not in _OUR_FIELDS and c not in numbered]
        has_text = {"caption", "captions", "tags"} & set(header) or numbered
        if "audio" not in header or not has_text or (unknown and extra == "error"):
            raise wrong_columns(
                str(path),
                header,
                "'audio', a caption column ('caption', "
                "'captions' or 'caption_1..caption_N') and/or 'tags'; optional "
                "'labels', 'split', 'licence'" + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            )
        for row in reader:
            line = reader.line_num
            if None in row:
                ctx.issue(line, f"{len(header) + len(row[None])} fields but {len(header)} columns")
                continue
            cell = {k: (v or "").strip() for k, v in row.items()}
            captions = [cell[c] for c in ["caption", *numbered] if cell.get(c)]
            if cell.get("captions"):
                captions += cell["captions"].split("|")
            tags = split_list(cell.get("tags"), TAG_SEP, "tags")
            ctx.record(
                line,
                cell["audio"],
                captions,
                tags,
                split_list(cell.get("labels"), _LABEL_SEP, "labels"),
                cell.get("split"),
                cell.get("licence") or cell.get("license"),
                {k: cell[k] for k in unknown},
            )


# ----------------------------------------------------------------------------- dispatch, report


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
    raise ValueError(
        f"{path}: cannot tell the manifest format from the extension {suffix!r} "
        "(expected .jsonl, .json, .csv or .tar shards)"
    )


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
