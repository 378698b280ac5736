"""``indexer rebuild``: move a collection to a new model by re-embedding every file.

The new vectors go into a shadow collection (``<name>~rebuild``) while the old index keeps
serving; a killed rebuild resumes where it stopped (it is an ordinary ingest). When it is
complete, one transaction replaces the old collection with the shadow, and the new index is
published under the old name.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from sqlalchemy import delete, update

from indexer.ingest.pipeline import IngestOptions, IngestReport, IngestStats, run_ingest
from indexer.store import catalog
from indexer.store.schema import Collection
from indexer.store.store import Store


def shadow_name(name: str) -> str:
    return f"{name}~rebuild"


def rebuild_collection(
    store: Store, name: str, *, progress: Callable[[IngestStats], None] | None = None, **options
) -> IngestReport:
    """Re-embed collection ``name`` with ``store``'s model (see module doc)."""
    old = store.collection(name)
    shadow = shadow_name(name)
    paths = [path for _, path in catalog.iter_file_paths(store.db, old.id)]
    report = run_ingest(
        store,
        IngestOptions(paths=paths, collection=shadow, segments=catalog.segment_spec(old), **options),
        progress=progress,
    )
    with store.lock(name):
        with store.db.session() as s:
            s.execute(delete(Collection).where(Collection.id == old.id))
            s.execute(update(Collection).where(Collection.name == shadow).values(name=name))
        report.published = store.publish(store.collection(name))
    shutil.rmtree(store.index_dir / shadow, ignore_errors=True)
    report.collection = name
    return report
