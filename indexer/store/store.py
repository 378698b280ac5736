"""``Store``: one object that ties the metadata database, the index folder and the model
together for the CLI, the service and the ingest pipeline.

    store = Store.open(IndexerSettings())            # or Store.open(settings, model=...)
    report = run_ingest(store, IngestOptions(paths=["./library"]))
    hits = Searcher(store, "default").search_text("rain on a tin roof")

The model is opened only when something needs vectors, so `indexer status` or a no-change
re-run never pays for loading it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.models.manifest import Manifest, load_manifest
from indexer.settings import IndexerSettings
from indexer.store import catalog, versions
from indexer.store.catalog import SegmentSpec
from indexer.store.db import Database, open_database
from indexer.store.schema import Collection

if TYPE_CHECKING:
    from indexer.models.encoder import ClapEncoder


class Store:
    def __init__(self, settings: IndexerSettings, db: Database, model_dir: Path | None):
        self.settings = settings
        self.db = db
        self.index_dir = Path(settings.resolved_index_dir)
        self._model_dir = model_dir
        self._encoder: ClapEncoder | None = None

    @classmethod
    def open(cls, settings: IndexerSettings | None = None, *, model: Path | None = None, create: bool = True) -> Store:
        """``create=False``: read-only use, a missing SQLite database is an error (``open_database``)."""
        settings = settings or IndexerSettings()
        db = open_database(settings.resolved_database_url, create=create, timeout_s=settings.db_timeout_s)
        return cls(settings, db, model)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ model
    @property
    def model_dir(self) -> Path:
        return Path(self._model_dir or self.settings.resolved_model_dir)

    @cached_property
    def manifest(self) -> Manifest:
        return load_manifest(self.model_dir)

    @property
    def variant(self) -> str:
        return self.settings.model_variant or self.manifest.default_variant

    def encoder(self) -> ClapEncoder:
        if self._encoder is None:
            from indexer.models.encoder import ClapEncoder

            self._encoder = ClapEncoder(self.model_dir, self.manifest, variant=self.variant, options=self.settings.onnx)
        return self._encoder

    # ------------------------------------------------------------------ collections
    def open_collection(self, name: str, *, segments: SegmentSpec | None = None) -> Collection:
        return catalog.open_collection(self.db, name, self.manifest, self.variant, segments)

    def collection(self, name: str) -> Collection:
        return catalog.get_collection(self.db, name)

    @contextmanager
    def lock(self, name: str, *, wait: bool = False) -> Iterator[None]:
        catalog.check_collection_name(name, shadow_ok=True)  # the lock is a file in <index>/<name>/
        with versions.collection_lock(self.index_dir, name, wait=wait):
            yield

    def publish(self, collection: Collection, *, force_rebuild: bool = False) -> list:
        """Publish the file index (and the segment index if the collection has segments)."""
        from indexer.store.publish import publish_index

        kinds = ["files"] + (["segments"] if collection.segment_seconds else [])
        budget = int(self.settings.index_memory_gb * (1 << 30))
        return [
            publish_index(
                self.db,
                collection,
                self.index_dir,
                kind,
                memory_budget_bytes=budget,
                force_rebuild=force_rebuild,
                use_gpu=self.settings.faiss_gpu,
            )
            for kind in kinds
        ]
