"""What `indexer status` reports: per collection, its model, its files by status, the live index
versions and WHY that index type was chosen (plan reason, nlist/nprobe, measured recall)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from indexer.store import versions
from indexer.store.schema import STATUS_FAILED, File, Segment

if TYPE_CHECKING:
    from indexer.store.store import Store


def failing_files(
    store: Store, collection_id: int, *, limit: int | None = None
) -> list[tuple[str, str, str, int, int]]:
    """The files of a collection that are failing now: (path, code, reason, size, mtime_ns)."""
    with store.db.session() as s:
        query = (
            select(File.path, File.error_code, File.error, File.size, File.mtime_ns)
            .where(File.collection_id == collection_id, File.status == STATUS_FAILED)
            .order_by(File.path)
        )
        return [(p, c or "error", e or "", size, mtime) for p, c, e, size, mtime in s.execute(query.limit(limit))]


def collection_status(store: Store, name: str, *, errors: bool = False, max_errors: int = 1000) -> dict:
    collection = store.collection(name)
    with store.db.session() as s:
        by_status = dict(
            s.execute(
                select(File.status, func.count()).where(File.collection_id == collection.id).group_by(File.status)
            ).all()
        )
        hours = (s.scalar(select(func.sum(File.duration_s)).where(File.collection_id == collection.id)) or 0) / 3600
        n_segments = (
            s.scalar(select(func.count()).select_from(Segment).where(Segment.collection_id == collection.id)) or 0
        )
    failed = []
    if errors:
        failed = [
            dict(path=p, code=c, error=e) for p, c, e, *_ in failing_files(store, collection.id, limit=max_errors)
        ]
    indexes = {}
    for kind in ("files", "segments"):
        live = versions.current_version(store.index_dir, name, kind)
        if live is None:
            continue
        try:
            described = json.loads((live.folder / "index.json").read_text())
        except (OSError, ValueError):
            described = {}
        indexes[kind] = dict(
            version=live.folder.name,
            folder=str(live.folder),
            vectors=live.n_vectors,
            up_to_date=live.generation >= collection.generation,
            plan=described.get("plan", {}),
            params=described.get("params", {}),
            tuning=described.get("tuning", {}),
        )
    return dict(
        collection=name,
        model=collection.model_name,
        fingerprint=collection.model_fingerprint,
        variant=collection.model_variant,
        dim=collection.dim,
        files=by_status,
        audio_hours=round(hours, 3),
        segments=n_segments,
        segment_seconds=collection.segment_seconds,
        segment_hop_seconds=collection.segment_hop_seconds,
        indexes=indexes,
        errors=failed,
    )


def format_status(d: dict) -> str:
    files = d["files"]
    lines = [
        f"collection {d['collection']!r}  model {d['model']} ({d['variant']}, {d['dim']}-d, {d['fingerprint'][:16]}...)",
        f"  files: {files.get('indexed', 0)} indexed, {files.get('failed', 0)} failed; "
        f"{d['audio_hours']:.2f} h of audio"
        + (
            f"; {d['segments']} segments of {d['segment_seconds']:g} s (hop {d['segment_hop_seconds']:g} s)"
            if d["segment_seconds"]
            else ""
        ),
    ]
    if not d["indexes"]:
        lines.append("  index: none published yet")
    for kind, info in d["indexes"].items():
        plan, params, tuning = info["plan"], info["params"], info["tuning"]
        knobs = ", ".join(
            f"{k}={v}" for k, v in {**({"nlist": plan.get("nlist")} if plan.get("nlist") else {}), **params}.items()
        )
        lines.append(
            f"  {kind} index {info['version']}: {info['vectors']} vectors, {plan.get('kind', '?')} "
            f"({plan.get('factory', '?')}{', ' + knobs if knobs else ''})"
            + ("" if info["up_to_date"] else "  [behind the database: run ingest or check --repair]")
        )
        if plan.get("estimated_bytes") is not None:
            lines.append(f"    memory ~{plan['estimated_bytes'] / 2**20:.1f} MiB")
        if plan.get("kind") != "flat" and tuning.get("recall_at_10") is not None:
            lines.append(
                f"    measured recall@10 vs exact: {tuning['recall_at_10']:.3f} "
                f"(target {tuning.get('target_recall', '?')}, {tuning.get('queries', '?')} queries)"
            )
        if plan.get("reason"):
            lines.append(f"    why: {plan['reason']}")
    if d["errors"]:
        lines.append(f"  failed files ({len(d['errors'])}):")
        lines.extend(f"    [{e['code']}] {e['path']}: {e['error']}" for e in d["errors"])
    return "\n".join(lines)
