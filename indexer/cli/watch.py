"""``indexer watch``: keep a collection in sync with folders as files appear, change or go."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.cli.common import collection_option, ingest_request, store_options
from indexer.cli.library import print_report


@click.command("watch", help="Ingest PATHS, then keep the collection in sync as files appear, change or disappear.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@collection_option
@click.option("--ext", "extensions", multiple=True, help="extensions to pick up (repeatable; default: every audio one)")
@click.option("--follow-symlinks", is_flag=True, help="enter symlinked folders and files")
@click.option("--workers", type=int, default=None, help="decode processes (default: one per core)")
@click.option("--segments/--no-segments", default=False, help="also index windows of long files")
@click.option(
    "--quiet-seconds",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="sync a folder once its files have stopped changing for this long",
)
@click.option("--poll", is_flag=True, help="poll instead of waiting for events (network file systems)")
@store_options
def watch(paths, collection, extensions, follow_symlinks, workers, segments, quiet_seconds, poll, store) -> int:
    from indexer.ingest.watch import WatchOptions, watch_collection
    from indexer.store.catalog import SegmentSpec

    segment_spec = SegmentSpec(10.0, 5.0) if segments else None
    options = ingest_request(paths, collection, extensions, follow_symlinks, workers=workers, segments=segment_spec)
    print(f"watching {', '.join(str(p) for p in paths)} for {collection!r} (Ctrl-C stops)", flush=True)

    def synced(report) -> None:
        print_report(report)
        print(flush=True)

    watch_collection(store, options, WatchOptions(quiet_s=quiet_seconds, force_polling=poll), on_sync=synced)
    return 0


COMMANDS = [watch]
