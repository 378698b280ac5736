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
import posixpath
import re
import tarfile
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


# ----------------------------------------------------------------------------- public layouts


def read_audiocaps(path: str | Path, audio_dir: str | Path | None = None, *,
                   split: str | None = None, templates: Sequence[str] = AUDIOCAPS_TEMPLATES,
                   exts: Sequence[str] = AUDIO_EXTS, on_error: OnError = "skip",
                   check_audio: bool = True, probe_audio: bool = False,
                   limits: DecodeLimits | None = None) -> Result:
    """AudioCaps ``audiocap_id,youtube_id,start_time,caption``: one record per (youtube_id,
    start_time) with all its captions. The audio is the first existing
    ``audio_dir/template.format(youtube_id=, start_time=, audiocap_id=, ext=)`` over ``templates``
    x ``exts`` (``start_time`` as an integer when whole, e.g. ``30``)."""
    ctx = _ctx(path, on_error, audio_dir, split=split, check_audio=check_audio,
               probe_audio=probe_audio, limits=limits)
    _, rows = _csv_rows(path, ("youtube_id", "start_time", "caption"),
                        "audiocap_id, youtube_id, start_time, caption")
    groups: dict[tuple[str, str], dict] = {}
    for line, row in rows:
        if not row.get("youtube_id"):
            ctx.issue(line, "empty youtube_id")
        elif not row.get("caption"):
            ctx.issue(line, "empty caption")
        else:
            start = row.get("start_time", "")
            try:
                start = str(int(float(start))) if float(start).is_integer() else start
            except ValueError:
                pass
            g = groups.setdefault((row["youtube_id"], start),
                                  {"line": line, "captions": [], "ids": []})
            g["captions"].append(row["caption"])
            g["ids"].append(row.get("audiocap_id", ""))
    records = []
    for (yid, start), g in groups.items():
        fields = dict(youtube_id=yid, start_time=start, audiocap_id=g["ids"][0])
        names = [t.format(ext=e, **fields) for t in templates for e in exts]
        found = next((n for n in names if os.path.isfile(ctx.base_dir / n)), None)
        if found is None and check_audio:
            ctx.issue(g["line"], f"no audio for youtube_id {yid} in {ctx.base_dir} "
                      f"(looked for {', '.join(names[:3])}, ...)")
            continue
        rec = ctx.record(g["line"], found or names[0], g["captions"],
                         meta={"youtube_id": yid, "start_time": start, "audiocap_ids": g["ids"]})
        if rec is not None:
            records.append(rec)
    return records, sorted(ctx.issues, key=lambda i: i.line)


def read_clotho(path: str | Path, audio_dir: str | Path | None = None, *, split: str | None = None,
                on_error: OnError = "skip", check_audio: bool = True, probe_audio: bool = False,
                limits: DecodeLimits | None = None) -> Result:
    """Clotho ``file_name,caption_1..caption_5`` (one CSV per split, hence the ``split``
    argument); audio is ``audio_dir/file_name``."""
    ctx = _ctx(path, on_error, audio_dir, split=split, check_audio=check_audio,
               probe_audio=probe_audio, limits=limits)
    header, rows = _csv_rows(path, ("file_name", "caption_1"), "file_name, caption_1..caption_N")
    numbered = sorted((c for c in header if _CAPTION_N.fullmatch(c)), key=lambda c: int(c[8:]))
    records = []
    for line, row in rows:
        rec = ctx.record(line, row["file_name"], [row[c] for c in numbered if row.get(c)])
        if rec is not None:
            records.append(rec)
    return records, ctx.issues


def expand_shards(shards: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard paths from a list, a glob, or a brace pattern like ``data/{000000..000012}.tar``
    (zero-padded ranges and ``{a,b}`` lists); globs are sorted, explicit lists keep their order."""
    if not isinstance(shards, (str, Path)):
        return [p for s in shards for p in expand_shards(s)]
    pending, out = [str(shards)], []
    while pending:
        pattern = pending.pop(0)
        m = re.search(r"\{([^{}]*)\}", pattern)
        if m is None:
            out.extend(sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
            continue
        body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
        rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
        if rng:
            lo, hi, width = int(rng.group(1)), int(rng.group(2)), len(rng.group(1))
            items = [str(i).zfill(width) for i in range(lo, hi + 1)]
        else:
            items = body.split(",")
        pending[:0] = [head + item + tail for item in items]
    return out


def read_webdataset(shards: str | Path | Sequence[str | Path], *, split: str | None = None,
                    on_error: OnError = "skip", audio_exts: Sequence[str] = AUDIO_EXTS,
                    check_audio: bool = True, probe_audio: bool = False,
                    limits: DecodeLimits | None = None) -> Result:
    """LAION-Audio-630K style shards: ``KEY.<audio>`` + ``KEY.json`` per sample. The line of a
    record is its 1-based sample number in the shard. ``text`` (string or list) gives captions
    (empty strings dropped), ``tag`` gives tags, ``original_data`` and other keys go to meta.
    ``probe_audio``/``limits`` are accepted for a uniform ``read_any`` but not applied to members
    (probing means reading every member; a bad one is substituted at training time)."""
    records, issues = [], []
    for shard in expand_shards(shards):
        ctx = _ctx(shard, on_error, None, split=split, check_audio=check_audio)
        if not os.path.isfile(shard):
            ctx.issue(0, "shard not found")
            issues += ctx.issues
            continue
        samples: dict[str, dict] = {}
        try:
            with tarfile.open(shard, "r:*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    folder, base = posixpath.split(member.name)
                    stem, _, ext = base.partition(".")
                    sample = samples.setdefault(posixpath.join(folder, stem), {})
                    if ext.lower() == "json":
                        sample["json"] = tar.extractfile(member).read()
                    elif ext.lower() in audio_exts:
                        sample["audio"] = member.name
        except (tarfile.TarError, OSError, EOFError) as exc:
            ctx.issue(len(samples), f"cannot read the shard past sample {len(samples)} ({exc})")
        for number, (key, sample) in enumerate(samples.items(), 1):
            rec = _laion_record(ctx, number, os.path.abspath(shard), key, sample)
            if rec is not None:
                records.append(rec)
        issues += ctx.issues
    return records, issues


def _laion_record(ctx: _Ctx, number: int, shard: str, key: str, sample: dict) -> ClipRecord | None:
    if "audio" not in sample:
        return ctx.issue(number, f"sample {key} has no audio member")
    if "json" not in sample:
        return ctx.issue(number, f"sample {key} has no {key}.json")
    try:
        obj = json.loads(sample["json"])
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        text = obj.get("text")
        captions = _as_list([text] if isinstance(text, str) else text, _TAG_SEP, "text")
        tags = _as_list(obj.get("tag"), _TAG_SEP, "tag")
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        return ctx.issue(number, f"{key}.json: {exc}")
    licence = obj.get("licence", obj.get("license"))
    meta = {k: v for k, v in obj.items() if k not in ("text", "tag")}
    return ctx.record(number, tar_ref(shard, sample["audio"]), captions, tags,
                      licence=licence if isinstance(licence, str) else None, meta=meta)


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
