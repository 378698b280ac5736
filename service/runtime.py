"""The service's long-lived state: store, model, loaded indexes, batcher, cache, jobs, watcher.

One ``Runtime`` per app, created by the lifespan and reached by routes as
``request.app.state.runtime``. Routes never open a model or an index themselves.

Hot reload: the watcher (a Redis notice from whoever published, plus polling of the shared
``CURRENT`` pointers) calls :meth:`reload`; each loaded searcher swaps to the new version
under its lock, so in-flight searches finish on the old one and nothing restarts. A version
built by another model is refused and the old one keeps serving (readiness says why).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from indexer import errors as core
from indexer.models.hardware import hardware_report
from indexer.models.manifest import Manifest
from indexer.search import Searcher
from indexer.store import catalog, versions
from indexer.store.store import Store
from service.batching import MicroBatcher
from service.cache import Cache, VectorLRU
from service.inference import InferenceEngine
from service.jobs import JobQueue, open_job_queue
from service.metrics import Metrics
from service.problems import ProblemError
from service.readiness import Dependency, DependencyChecks
from service.reload import IndexWatcher
from service.settings import ServiceSettings
from service.vocabulary import Vocabulary, audioset_labels, read_label_file

if TYPE_CHECKING:
    from indexer.models.encoder import ClapEncoder

log = logging.getLogger("service")
KINDS = ("files", "segments")
_T = TypeVar("_T")


def _started(value: _T | None, what: str) -> _T:
    if value is None:
        raise RuntimeError(f"the runtime has no {what}: Runtime.start() has not run")
    return value


class Runtime:
    decode_slots: asyncio.Semaphore  # set by the app's lifespan, on its event loop

    def __init__(self, settings: ServiceSettings, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._store: Store | None = None
        self._encoder: ClapEncoder | None = None
        self.hardware: dict | None = None  # hardware_report() once the model is loaded
        self._batcher: MicroBatcher | None = None
        self.cache = Cache(settings.redis_url, timeout_s=settings.redis_timeout_s)
        self.text_vector_cache = VectorLRU(settings.text_vector_cache_size)
        self._jobs: JobQueue | None = None
        self.watcher: IndexWatcher | None = None
        self._vocabulary: Vocabulary | None = None
        self._searchers: dict[tuple[str, str], Searcher] = {}
        self._load_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()  # the watcher and a local job may both call reload
        self.started_at: float | None = None
        self.checks: DependencyChecks | None = None

    # Started by start(); reading one before it ran is a programming error, said clearly.
    @property
    def store(self) -> Store:
        return _started(self._store, "store")

    @property
    def encoder(self) -> ClapEncoder:
        return _started(self._encoder, "encoder")

    @property
    def batcher(self) -> MicroBatcher:
        return _started(self._batcher, "batcher")

    @property
    def jobs(self) -> JobQueue:
        return _started(self._jobs, "job queue")

    @property
    def vocabulary(self) -> Vocabulary:
        return _started(self._vocabulary, "vocabulary")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        store = self._store = Store.open(s)
        encoder = self._encoder = store.encoder()  # loads the ONNX towers now, not on a request
        # what the model and FAISS really run on, read once here: /readyz only reads memory
        self.hardware = hardware_report(encoder, s.device, s.faiss_gpu)
        batcher = self._batcher = MicroBatcher(
            InferenceEngine(encoder, self.metrics),
            max_batch=s.batch_max,
            max_wait_s=s.batch_wait_ms / 1000,
            max_queue=s.queue_max,
            on_batch=self._on_batch,
        )
        batcher.start()
        labels = audioset_labels() + (read_label_file(s.vocabulary_file) if s.vocabulary_file else [])
        manifest = store.manifest
        self._vocabulary = Vocabulary(
            labels,
            s.label_template,
            cache_dir=Path(s.home) / "cache",
            model_key=f"{manifest.fingerprint}:{store.variant}",
        )
        for collection in catalog.list_collections(store.db):
            if "~" in collection.name:  # a rebuild's shadow collection is not served
                continue
            for kind in KINDS:
                try:
                    self.searcher(collection.name, kind)
                except (ProblemError, core.ClapSearchError):
                    pass  # recorded in _load_errors when it is a real failure
        self._jobs = open_job_queue(s, on_published=self.reload)
        self.watcher = IndexWatcher(s, self.reload)
        self.watcher.start()
        self._vocabulary_thread = threading.Thread(target=self._warm_vocabulary, name="vocabulary", daemon=True)
        self._vocabulary_thread.start()
        jobs = self._jobs
        self.checks = DependencyChecks(
            [
                # without its database the replica can answer nothing but cache hits: not ready
                Dependency("database", self._check_database, required=True),
                # Redis is an optimisation (the cache never fails a request): reported only
                Dependency("redis", self.cache.status, required=False),
                Dependency("jobs", jobs.status, required=False),
            ],
            interval_s=s.readiness_interval_s,
            budget_s=s.readiness_timeout_s,
        )
        self.checks.start()
        self.started_at = time.time()

    def close(self) -> None:
        if self.checks is not None:
            self.checks.stop()
        # let the vocabulary finish its ONNX call: a thread killed inside one at exit aborts
        if getattr(self, "_vocabulary_thread", None) is not None:
            self._vocabulary_thread.join(timeout=60)
        if self.watcher is not None:
            self.watcher.stop()
        if self._jobs is not None:
            self._jobs.close()
        if self._batcher is not None:
            self._batcher.stop()
        self.cache.close()
        if self._store is not None:
            self._store.close()

    def _warm_vocabulary(self) -> None:
        try:
            self.vocabulary.vectors(self.encoder.embed_text)
        except Exception:
            log.exception("embedding the label vocabulary failed; audio->text will retry on use")

    def _on_batch(self, size: int, depth: int) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.queue_depth.set(depth)

    # ------------------------------------------------------------------ indexes
    @property
    def manifest(self) -> Manifest:
        return self.store.manifest

    @cached_property
    def embedding_key_prefix(self) -> str:
        """Cache keys of text vectors start with the model's fingerprint and variant (a hash of
        its manifest, ~20 us: once, not once per query or label)."""
        return f"emb:{self.manifest.fingerprint[:16]}:{self.store.variant}:"

    def searcher(self, collection: str, kind: str = "files") -> Searcher:
        """The loaded index of ``collection`` (``files`` or ``segments``), loading it on first use."""
        key = (collection, kind)
        found = self._searchers.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._searchers.get(key)
            if found is not None:
                return found
            row = self.store.collection(collection)  # CollectionNotFoundError -> 404
            if kind == "segments" and row.segment_seconds is None:
                raise ProblemError(
                    "index.no_segments",
                    f"collection {collection!r} was ingested without segments; "
                    "run `indexer ingest --segments` to search inside long files",
                )
            if versions.current_version(self.store.index_dir, collection, kind) is None:
                raise ProblemError(
                    "index.not_published",
                    f"collection {collection!r} has no published {kind} index yet; ingest some audio first",
                )
            try:
                found = Searcher(self.store, collection, kind=kind)
            except core.ClapSearchError as exc:
                self._load_errors[f"{collection}/{kind}"] = f"{exc.code}: {exc}"
                raise
            self._load_errors.pop(f"{collection}/{kind}", None)
            self._searchers[key] = found
            self.metrics.index_vectors.labels(collection, kind).set(found.version.n_vectors)
            log.info(
                "loaded %s/%s index %s (%d vectors)",
                collection,
                kind,
                found.version.folder.name,
                found.version.n_vectors,
            )
            return found

    def reload(self, collection: str | None = None) -> None:
        """Switch loaded searchers to newly published versions; load indexes that appeared."""
        with self._reload_lock:
            self._reload(collection)

    def _reload(self, collection: str | None) -> None:
        for (name, kind), searcher in list(self._searchers.items()):
            if collection is not None and name != collection:
                continue
            try:
                if searcher.reload_if_changed():
                    self.metrics.reloads.inc()
                    self.metrics.index_vectors.labels(name, kind).set(searcher.version.n_vectors)
                    self._load_errors.pop(f"{name}/{kind}", None)
                    log.info("hot-reloaded %s/%s to %s", name, kind, searcher.version.folder.name)
            except Exception as exc:
                self._load_errors[f"{name}/{kind}"] = f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"
                log.error("kept the old %s/%s index: %s", name, kind, exc)
        if collection is not None:
            for kind in KINDS:
                try:
                    self.searcher(collection, kind)
                except (ProblemError, core.ClapSearchError):
                    pass

    def loaded(self) -> dict[str, dict]:
        return {
            f"{name}/{kind}": {
                "version": s.version.version,
                "n_vectors": s.version.n_vectors,
                "generation": s.version.generation,
            }
            for (name, kind), s in self._searchers.items()
        }

    # ------------------------------------------------------------------ readiness
    def _check_database(self) -> dict:
        """One round trip to the metadata database (run by a readiness thread, never a request)."""
        import sqlalchemy as sa

        db = self.store.db
        started = time.perf_counter()
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return {"state": "ok", "detail": f"{db.dialect}: SELECT 1 in {(time.perf_counter() - started) * 1000:.1f} ms"}

    def readiness(self) -> tuple[bool, dict]:
        """Ready = the model is loaded, the database answers and every published index is being
        served. A fresh deployment with no collection yet is ready (there is nothing to load).

        Reads only in-memory state (dependency answers come from :class:`DependencyChecks`'
        threads), so it is safe on the event loop whatever Redis or the database are doing."""
        model_ok = self._encoder is not None
        deps = self.checks.snapshot() if self.checks is not None else {}
        failing = self.checks.failing(deps) if self.checks is not None else ["startup"]
        detail = {
            "model": {
                "loaded": model_ok,
                "name": self.manifest.name if model_ok else None,
                "fingerprint": self.manifest.fingerprint if model_ok else None,
                "variant": self.store.variant if model_ok else None,
                "providers": list(getattr(self._encoder, "providers", [])),
            },
            "hardware": self.hardware,
            "indexes": self.loaded(),
            "index_errors": dict(self._load_errors),
            "vocabulary": {
                "labels": len(self._vocabulary.labels) if self._vocabulary else 0,
                "embedded": bool(self._vocabulary and self._vocabulary.ready),
            },
            "database": deps.get("database"),
            "redis": deps.get("redis"),
            "jobs": deps.get("jobs"),
            "watcher": self.watcher.status() if self.watcher is not None else None,
        }
        # A failed hot reload leaves the previous version serving: reported, but still ready
        # (one bad publish must not pull every replica out of the load balancer at once).
        unserved = [key for key in self._load_errors if tuple(key.split("/", 1)) not in self._searchers]
        ready = model_ok and not unserved and not failing
        reasons = (
            ([] if model_ok else ["model: not loaded"])
            + [f"{name}: {deps[name]['detail']}" if name in deps else name for name in failing]
            + [f"index {key}: {self._load_errors[key]}" for key in unserved]
        )
        return ready, {"ready": ready, "reasons": reasons, **detail}
