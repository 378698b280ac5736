"""Library commands: ingest, status, remove, rebuild, export, search, check, duplicates."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from indexer.cli.common import collection_option, ingest_request, read_store_options, store_options
from indexer.ingest.discover import AUDIO_EXTENSIONS


def print_report(report) -> None:
    stats = report.stats
    print(
        f"collection {report.collection!r}: {stats.discovered} files found, {stats.embedded} embedded "
        f"({stats.audio_seconds / 3600:.2f} h of audio), {stats.skipped} unchanged, "
        f"{stats.failed} failed, {stats.removed} removed in {report.seconds:.1f} s"
    )
    for result in report.published:
        if result.version is not None:
            print(
                f"  {result.kind} index {result.version.folder.name}: {result.mode}, "
                f"{result.version.n_vectors} vectors (+{result.added} -{result.removed}, {result.seconds:.1f} s)"
            )
    # Every file failing now, not just this run's: a re-run skips unchanged broken files, and
    # a summary without them would read as if they were fixed.
    new = {path for path, _, _ in report.failures}
    failing = report.failing or report.failures
    if failing:
        print(
            f"{len(failing)} file{'s' if len(failing) != 1 else ''} failing (fix or replace them, then "
            f"`indexer ingest --retry-failed`; `indexer status --errors` lists them again):",
            file=sys.stderr,
        )
    for path, code, message in failing[:50]:
        since = "" if path in new else "  (since an earlier run)"
        print(f"  failed [{code}] {path}: {message}{since}", file=sys.stderr)
    if len(failing) > 50:
        print(f"  ... and {len(failing) - 50} more: `indexer status --errors`", file=sys.stderr)
    for path, message in report.walk_errors[:20]:
        print(f"unreadable {path}: {message}", file=sys.stderr)


def ingest_options(func):
    for option in reversed(
        [
            click.option(
                "--ext",
                "extensions",
                multiple=True,
                help=f"extensions to pick up in folders (repeatable; default {' '.join(AUDIO_EXTENSIONS)})",
            ),
            click.option("--follow-symlinks", is_flag=True, help="enter symlinked folders and files"),
            click.option("--workers", type=int, default=None, help="decode processes (default: one per core)"),
            click.option("--batch-size", type=int, default=32, show_default=True),
            click.option("--quiet", "-q", is_flag=True, help="no progress bar"),
            click.option(
                "--progress-every",
                type=click.FloatRange(min=0.1),
                default=5.0,
                show_default=True,
                help="seconds between progress lines when stderr is not a terminal (a log, a pipe)",
            ),
        ]
    ):
        func = option(func)
    return func


@click.command("ingest", help="Embed new and changed audio files under PATHS and publish the index.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option
@ingest_options
@click.option("--prune", is_flag=True, help="forget files under PATHS that no longer exist")
@click.option("--retry-failed", is_flag=True, help="try files that failed before again")
@click.option(
    "--analyze",
    is_flag=True,
    help="then estimate tempo, key and loudness of files not analysed yet (needs librosa: the `analysis` extra)",
)
@click.option(
    "--segments/--no-segments",
    default=False,
    help="also index windows of long files, so search can return the moment inside them",
)
@click.option("--segment-seconds", type=float, default=10.0, show_default=True)
@click.option("--segment-hop", type=float, default=5.0, show_default=True)
@click.option(
    "--commit-every",
    type=int,
    default=200,
    show_default=True,
    help="files per database transaction (a kill loses at most this many)",
)
@store_options
def ingest(
    paths,
    collection,
    extensions,
    follow_symlinks,
    workers,
    batch_size,
    quiet,
    progress_every,
    prune,
    retry_failed,
    analyze,
    segments,
    segment_seconds,
    segment_hop,
    commit_every,
    store,
) -> int:
    from indexer.cli.progress import IngestProgress
    from indexer.ingest.pipeline import run_ingest
    from indexer.store.catalog import SegmentSpec

    if analyze:
        from indexer.analysis.musical import librosa_module

        librosa_module()  # no librosa: say so before an hour of ingest, not after it
    options = ingest_request(
        paths,
        collection,
        extensions,
        follow_symlinks,
        prune=prune,
        retry_failed=retry_failed,
        workers=workers,
        batch_size=batch_size,
        commit_every=commit_every,
        segments=SegmentSpec(segment_seconds, segment_hop) if segments else None,
    )
    bar = IngestProgress(quiet=quiet, interval=progress_every)
    try:
        report = run_ingest(store, options, progress=bar)
    finally:
        bar.close()
    print_report(report)
    if analyze:
        from indexer.cli.analysis import run_analysis

        analysed = run_analysis(store, collection, workers=workers, quiet=quiet)
        return report.exit_code or analysed
    return report.exit_code


@click.command("status", help="Collections, their files, index versions and how the index was chosen.")
@click.option("--collection", "-c", default=None, help="one collection (default: all)")
@click.option("--errors", is_flag=True, help="list the files that failed, with the reason")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--hardware", is_flag=True, help="load the model and say what it and the index really run on")
@read_store_options
def status(collection, errors, as_json, hardware, store) -> int:
    from indexer.store.status import collection_status, format_status

    names = [collection] if collection else [c.name for c in store_collections(store)]
    data = [collection_status(store, name, errors=errors) for name in names]
    if hardware:
        from indexer.models.hardware import format_report, hardware_report

        report = hardware_report(store.encoder(), store.settings.device, store.settings.faiss_gpu)
        if as_json:
            print(json.dumps({"hardware": report, "collections": data}, indent=2, default=str))
            return 0
        print(format_report(report["model"], report["index"]) + "\n")
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    elif not data:
        print(f"no collections yet in {store.settings.resolved_database_url} (run `indexer ingest PATH`)")
    else:
        print("\n\n".join(format_status(d) for d in data))
    return 0


def store_collections(store):
    from indexer.store.catalog import list_collections

    return list_collections(store.db)


@click.command("remove", help="Forget files, or every file under folders, and republish.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option
@store_options
def remove(paths, collection, store) -> int:
    from indexer.store import catalog

    target = store.collection(collection)
    with store.lock(collection):
        ids = catalog.file_ids_under(store.db, target.id, [os.path.abspath(p) for p in paths])
        removed = catalog.remove_files(store.db, target.id, ids)
        store.publish(store.collection(collection))
    print(f"removed {removed} files from {collection!r}")
    return 0 if removed else 1


@click.command("rebuild", help="Re-embed every file of a collection with --model, then swap it in.")
@collection_option
@ingest_options
@store_options
def rebuild(collection, extensions, follow_symlinks, workers, batch_size, quiet, progress_every, store) -> int:
    from indexer.cli.progress import IngestProgress
    from indexer.ingest.rebuild import rebuild_collection

    bar = IngestProgress(quiet=quiet, interval=progress_every)
    try:
        report = rebuild_collection(
            store, collection, progress=bar, workers=workers, batch_size=batch_size, follow_symlinks=follow_symlinks
        )
    finally:
        bar.close()
    print_report(report)
    return report.exit_code


@click.command(
    "export",
    help="Write a collection to --out: vectors and metadata as Parquet, or (by the suffix) "
    "its files as an .m3u8 playlist or a .csv sheet.",
)
@collection_option
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--segments", is_flag=True, help="export segment vectors instead of file vectors (Parquet)")
@read_store_options
def export(collection, out, segments, store) -> int:
    from indexer.exports import collection_records, lines
    from indexer.store.export import export_parquet

    suffix = out.suffix.lower().lstrip(".")
    if suffix in ("m3u8", "m3u", "csv"):
        records = collection_records(store.db, store.collection(collection).id)
        with out.open("w", encoding="utf-8", newline="") as fh:
            fh.writelines(lines(records, "csv" if suffix == "csv" else "m3u8", locate=lambda r: r["path"]))
        print(f"wrote {out}")
        return 0
    rows = export_parquet(store.db, store.collection(collection), out, kind="segments" if segments else "files")
    print(f"wrote {rows} rows to {out}")
    return 0


@click.command(
    "search",
    help="Search a collection by text, by example (--audio FILE) or like an "
    "indexed item (--item ID); the same answers as the API's /v1/search.",
)
@click.argument("text", required=False)
@click.option("--audio", type=click.Path(path_type=Path, exists=True), default=None)
@click.option(
    "--item",
    "item_id",
    type=click.IntRange(min=1),
    default=None,
    help="an indexed item's id: its similar sounds (the item itself left out)",
)
@collection_option
@click.option("--top", "-k", "limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="skip this many hits (pagination)")
@click.option("--segments", is_flag=True, help="search windows of long files (start/end seconds)")
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "audio", "text"]),
    default="hybrid",
    show_default=True,
    help="text queries: words of file names, folders and tags fused with the sound (hybrid), sound only, or words only",
)
@click.option("--min-score", type=click.FloatRange(-1, 1), default=None, help="drop hits below this cosine")
@click.option(
    "--min-relevance",
    type=click.FloatRange(0, 1),
    default=None,
    help="text queries on calibrated models: drop hits below this relevance (0..1)",
)
@click.option("--tag", "tags", multiple=True, help="'rain' (any tag contains it) or 'genre:ambient' (repeatable)")
@click.option("--format", "formats", multiple=True, help="container formats to keep: WAV, FLAC... (repeatable)")
@click.option("--min-duration", type=click.FloatRange(min=0), default=None, help="seconds")
@click.option("--max-duration", type=click.FloatRange(min=0), default=None, help="seconds")
@click.option("--path-prefix", default=None, help="only files whose path starts with this")
@click.option("--bpm-min", type=float, default=None, help="only analysed files at least this tempo (`indexer analyze`)")
@click.option("--bpm-max", type=float, default=None, help="only analysed files at most this tempo")
@click.option("--key", "key_name", default=None, help="only files in this key: 'A minor', 'F# major', 'Bbm'")
@click.option(
    "--json", "as_json", is_flag=True, help="the page of hits as JSON, {items, total, limit, offset} (= --output json)"
)
@click.option(
    "--output",
    type=click.Choice(["text", "json", "csv", "m3u8"]),
    default="text",
    help="csv: a spreadsheet; m3u8: a playlist for players and DAWs (moments carry VLC start/stop)",
)
@read_store_options
def search(
    text,
    audio,
    item_id,
    collection,
    limit,
    offset,
    segments,
    mode,
    min_score,
    min_relevance,
    tags,
    formats,
    min_duration,
    max_duration,
    path_prefix,
    bpm_min,
    bpm_max,
    key_name,
    as_json,
    output,
    store,
) -> int:
    from indexer.filters import SearchFilters
    from indexer.query import SearchRequest, run_search, stored_vector

    if sum(x is not None for x in (text, audio, item_id)) != 1:
        raise click.UsageError("give a TEXT query, --audio FILE or --item ID (one of them)")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise click.UsageError("--min-duration is larger than --max-duration")
    filters = SearchFilters(
        min_duration=min_duration,
        max_duration=max_duration,
        formats=tuple(formats),
        tags=tuple(t for t in tags if t),
        path_prefix=path_prefix or None,
        bpm_min=bpm_min,
        bpm_max=bpm_max,
        key_name=key_name or None,
    )
    req = SearchRequest(collection, limit, offset, min_score, segments, filters, min_relevance=min_relevance, mode=mode)
    vector = None
    if audio is not None:
        encoder = store.encoder()
        vector = encoder.embed_views([encoder.views_from_file(audio)[0]])[0]
    elif item_id is not None:
        vector = stored_vector(store, item_id)
    page = run_search(store, req, text=text, vector=vector, exclude_file=item_id)
    hits = page.items
    if as_json or output == "json":  # the API's list envelope (GET /v1/search)
        envelope = {"collection": req.collection, "items": hits, "total": page.total, "limit": limit, "offset": offset}
        print(json.dumps(envelope, indent=2))
        return 0
    if output in ("csv", "m3u8"):
        from indexer.exports import render

        sys.stdout.write(render(hits, output, locate=lambda record: record["path"]))
        return 0
    from indexer.cli.analysis import musical_summary

    for hit in hits:
        span = f"  [{hit['start_s']:.1f}-{hit['end_s']:.1f} s]" if hit["start_s"] is not None else ""
        shown = f"  relevance {hit['relevance']:.2f}" if hit["relevance"] is not None else ""
        print(f"{hit['score']:+.3f}{shown}  {hit['path']}{span}{musical_summary(hit.get('analysis'))}")
    return 0


@click.command("check", help="Verify that rows, vectors and published indexes agree; --repair fixes them.")
@click.option("--collection", "-c", default=None, help="one collection (default: all)")
@click.option("--repair", is_flag=True)
@read_store_options
def check(collection, repair, store) -> int:
    from indexer.store.check import check_collection

    names = [collection] if collection else [c.name for c in store_collections(store)]
    healthy = True
    for name in names:
        report = check_collection(store, name, repair=repair)
        print(f"{name}: {'ok' if not report.problems else 'PROBLEMS'}")
        for problem in report.problems:
            print(f"  problem: {problem}")
        for fix in report.repaired:
            print(f"  repaired: {fix}")
        healthy = healthy and report.ok
    return 0 if healthy else 1


@click.command("duplicates", help="Groups of files that are the same recording (re-encodes, trims, gain, rates).")
@collection_option
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="cosine similarity in (0, 1] two files need to be grouped [default: 0.95, bench/RESULTS.md]",
)
@click.option("--min-group", type=int, default=2, show_default=True, help="smallest group to list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output ({items, total, ...})")
@read_store_options
def duplicates(collection, threshold, min_group, as_json, store) -> int:
    from indexer.duplicates import DEFAULT_THRESHOLD, find_duplicates, report_dict

    report = find_duplicates(
        store, collection, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, min_group=min_group
    )
    if as_json:
        print(json.dumps(report_dict(report), indent=2))
        return 0
    for n, group in enumerate(report.groups, 1):
        print(f"group {n}: {len(group.members)} files, {group.reason}")
        for member in group.members:
            best = max((p.score for p in group.pairs if member.id in (p.a, p.b)), default=0.0)
            print(f"  {best:.3f}  {member.path}")
    if not report.n_files:
        print(f"collection {collection!r} has no indexed files yet (run `indexer ingest`)", file=sys.stderr)
        return 0
    grouped = sum(len(g.members) for g in report.groups)
    print(
        f"{len(report.groups)} group{'s' if len(report.groups) != 1 else ''} ({grouped} of {report.n_files} files) "
        f"at similarity >= {report.threshold:g} in collection {collection!r} "
        f"({report.mode}, {report.seconds:.2f} s)",
        file=sys.stderr,
    )
    return 0


COMMANDS = [ingest, status, remove, rebuild, export, search, check, duplicates]
