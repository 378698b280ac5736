"""Readers for the public layouts users already have: AudioCaps and Clotho CSVs, and the
LAION-Audio-630K WebDataset shards. Same contract as :mod:`training.data.readers` (which
dispatches here from ``read_any``): ``(records, issues)``, bad lines reported with their number.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from training.data.records import (  # the shared row checks and issue bookkeeping
    CAPTION_N,
    TAG_SEP,
    Result,
    RowChecker,
    RowChecks,
    csv_rows,
    row_checker,
    split_list,
    tar_ref,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

AUDIO_EXTS = ("flac", "wav", "ogg", "mp3", "opus")
AUDIOCAPS_TEMPLATES = ("{youtube_id}.{ext}", "{youtube_id}_{start_time}.{ext}", "Y{youtube_id}.{ext}")


def read_audiocaps(
    path: str | Path,
    audio_dir: str | Path | None = None,
    *,
    templates: Sequence[str] = AUDIOCAPS_TEMPLATES,
    exts: Sequence[str] = AUDIO_EXTS,
    **checks: Unpack[RowChecks],
) -> Result:
    """AudioCaps ``audiocap_id,youtube_id,start_time,caption``: one record per (youtube_id,
    start_time) with all its captions. The audio is the first existing
    ``audio_dir/template.format(youtube_id=, start_time=, audiocap_id=, ext=)`` over ``templates``
    x ``exts`` (``start_time`` as an integer when whole, e.g. ``30``)."""
    ctx = row_checker(path, audio_dir, **checks)
    _, rows = csv_rows(path, ("youtube_id", "start_time", "caption"), "audiocap_id, youtube_id, start_time, caption")
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
            g = groups.setdefault((row["youtube_id"], start), {"line": line, "captions": [], "ids": []})
            g["captions"].append(row["caption"])
            g["ids"].append(row.get("audiocap_id", ""))
    for (yid, start), g in groups.items():
        fields = dict(youtube_id=yid, start_time=start, audiocap_id=g["ids"][0])
        names = [t.format(ext=e, **fields) for t in templates for e in exts]
        found = next((n for n in names if os.path.isfile(ctx.base_dir / n)), None)
        if found is None and ctx.check_audio:
            ctx.issue(
                g["line"], f"no audio for youtube_id {yid} in {ctx.base_dir} (looked for {', '.join(names[:3])}, ...)"
            )
            continue
        ctx.record(
            g["line"],
            found or names[0],
            g["captions"],
            meta={"youtube_id": yid, "start_time": start, "audiocap_ids": g["ids"]},
        )
    return ctx.records, sorted(ctx.issues, key=lambda i: i.line)


def read_clotho(
    path: str | Path,
    audio_dir: str | Path | None = None,
    **checks: Unpack[RowChecks],
) -> Result:
    """Clotho ``file_name,caption_1..caption_5`` (one CSV per split, hence the ``split``
    argument); audio is ``audio_dir/file_name``."""
    ctx = row_checker(path, audio_dir, **checks)
    header, rows = csv_rows(path, ("file_name", "caption_1"), "file_name, caption_1..caption_N")
    numbered = sorted((c for c in header if CAPTION_N.fullmatch(c)), key=lambda c: int(c[8:]))
    for line, row in rows:
        ctx.record(line, row["file_name"], [row[c] for c in numbered if row.get(c)])
    return ctx.records, ctx.issues


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
        body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end() :]
        rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
        if rng:
            lo, hi, width = int(rng.group(1)), int(rng.group(2)), len(rng.group(1))
            items = [str(i).zfill(width) for i in range(lo, hi + 1)]
        else:
            items = body.split(",")
        pending[:0] = [head + item + tail for item in items]
    return out


def read_webdataset(
    shards: str | Path | Sequence[str | Path],
    *,
    audio_exts: Sequence[str] = AUDIO_EXTS,
    **checks: Unpack[RowChecks],
) -> Result:
    """LAION-Audio-630K style shards: ``KEY.<audio>`` + ``KEY.json`` per sample. The line of a
    record is its 1-based sample number in the shard. ``text`` (string or list) gives captions
    (empty strings dropped), ``tag`` gives tags, ``original_data`` and other keys go to meta.
    ``probe_audio``/``limits`` are accepted for a uniform ``read_any`` but not applied to members
    (probing means reading every member; a bad one is substituted at training time)."""
    records, issues = [], []
    for shard in expand_shards(shards):
        ctx = row_checker(shard, None, **{**checks, "probe_audio": False, "limits": None})
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
            _laion_record(ctx, number, os.path.abspath(shard), key, sample)
        records += ctx.records
        issues += ctx.issues
    return records, issues


def _laion_record(ctx: RowChecker, number: int, shard: str, key: str, sample: dict) -> None:
    if "audio" not in sample:
        return ctx.issue(number, f"sample {key} has no audio member")
    if "json" not in sample:
        return ctx.issue(number, f"sample {key} has no {key}.json")
    try:
        obj = json.loads(sample["json"])
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        text = obj.get("text")
        captions = split_list([text] if isinstance(text, str) else text, TAG_SEP, "text")
        tags = split_list(obj.get("tag"), TAG_SEP, "tag")
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        return ctx.issue(number, f"{key}.json: {exc}")
    licence = obj.get("licence", obj.get("license"))
    meta = {k: v for k, v in obj.items() if k not in ("text", "tag")}
    ctx.record(
        number,
        tar_ref(shard, sample["audio"]),
        captions,
        tags,
        licence=licence if isinstance(licence, str) else None,
        meta=meta,
    )
