"""Typed settings of the search service: everything the indexer reads (``IndexerSettings``:
database, index folder, model, device) plus what only a server needs. All come from
``CLAPSEARCH_*`` environment variables and are read once, when the app is created; nothing is
read at import time.

Lists take comma-separated values: ``CLAPSEARCH_API_KEYS=key1,key2``,
``CLAPSEARCH_ALLOWED_INGEST_ROOTS=/srv/library,/mnt/sfx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from indexer.settings import IndexerSettings

MB = 1 << 20


def _split_commas(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceSettings(IndexerSettings):
    model_config = SettingsConfigDict(env_prefix="CLAPSEARCH_", extra="ignore", protected_namespaces=())

    # --- the server process (clapsearch-api serve) -------------------------------------------
    host: str = Field("127.0.0.1", description="address uvicorn listens on (the images: `0.0.0.0`)")
    port: int = Field(8000, ge=1, le=65535, description="port uvicorn listens on")
    workers: int = Field(
        1, ge=1, description="uvicorn worker processes (each holds the model and the index, so memory grows with them)"
    )

    # --- connections -------------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="redis://host:6379/0. Unset: no cache, ingest jobs run inside the API "
        "process, replicas notice new index versions by polling only.",
    )
    redis_timeout_s: float = Field(
        0.25,
        gt=0,
        description="socket timeout of every Redis call; a dead Redis costs at most this per request, then is skipped",
    )

    db_timeout_s: float = Field(
        3.0,
        ge=0,
        description="a PostgreSQL that hangs costs a request at most about twice this (the pool's ping, then "
        "one reconnect), then 503 store.database with Retry-After",
    )
    readiness_timeout_s: float = Field(
        0.5,
        gt=0,
        description="/readyz never waits longer than this; a dependency check (database, Redis) "
        "unanswered for longer reports that dependency down",
    )
    readiness_interval_s: float = Field(
        1.0, gt=0, description="how often background threads check the database and Redis for /readyz"
    )

    # --- what is served ----------------------------------------------------------------------
    default_collection: str = "default"
    label_template: str = Field(
        "This is a sound of {}.", description="how vocabulary labels are phrased before embedding"
    )
    vocabulary_file: Path | None = Field(
        None, description="extra labels for audio->text, one per line (added to AudioSet's)"
    )

    # --- security and limits -----------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="accepted X-API-Key / Bearer values; empty: no auth"
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="requests per minute per API key (per client address without keys); 0: unlimited"
    )
    rate_limit_burst: int = Field(20, ge=1, description="requests a key may make at once")
    auth_failures_per_minute: int = Field(
        10,
        ge=0,
        description="wrong API keys a client address may send per minute; past them it gets 429 auth.rate_limited "
        "with Retry-After (0: unlimited)",
    )
    metrics_public: bool = Field(False, description="serve /metrics without an API key")
    max_upload_bytes: int = Field(50 * MB, gt=0, description="largest accepted request body")
    max_upload_seconds: float = Field(600.0, gt=0, description="longest accepted uploaded audio")
    upload_sample_rate_cap: int = Field(
        192_000,
        ge=1000,
        description="decoding budget of an upload, in samples per second of audio summed over channels (48 kHz x 4 "
        "channels, or 96 kHz stereo): a file whose header says frames x channels exceeds max_upload_seconds x this "
        "is refused (413 audio.too_long) before decoding",
    )
    upload_queue: int = Field(
        8, ge=0, description="uploads that may wait for a decode thread (decode_threads); more get 503 service.busy"
    )
    upload_wait_s: float = Field(
        10.0, gt=0, description="longest an upload waits for a decode thread before 503 service.busy with Retry-After"
    )
    upload_decode_timeout_s: float = Field(
        30.0,
        gt=0,
        description="decode deadline of an upload: past it the request answers 503 service.busy (its thread still "
        "counts against decode_threads until the decoder returns, so the CPU stays bounded)",
    )
    max_limit: int = Field(100, ge=1, description="cap on `limit` (results per page)")
    max_offset: int = Field(1000, ge=0, description="cap on `offset` (deeper pages are refused)")
    max_labels: int = Field(256, ge=1, description="cap on candidate labels / texts per request")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- inference -----------------------------------------------------------------------------
    batch_max: int = Field(64, ge=1, description="queries embedded and searched together")
    batch_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits to fill up")
    queue_max: int = Field(512, ge=1, description="queued inference requests before 503 service.busy")
    decode_threads: int = Field(2, ge=1, description="uploads decoded at once")
    onnx_threads: int | None = Field(
        1,
        ge=0,
        description="ONNX Runtime threads per call; 1 in the "
        "service: a text query is too small to split, and the cores "
        "serve concurrent requests instead (0: one per core)",
    )
    onnx_spinning: bool = Field(
        False,
        description="idle ONNX Runtime threads spin-wait for the next "
        "call; off in the service so they leave the cores to the event loop",
    )
    malloc_arenas: int = Field(
        2,
        ge=0,
        le=64,
        description="glibc malloc arenas of the API process (as MALLOC_ARENA_MAX, which wins when set): few "
        "arenas keep memory flat under many concurrent requests; 0 leaves glibc's default (8 per core)",
    )
    gil_switch_interval_ms: float = Field(
        0.5, gt=0, description="Python's thread switch interval in the API process (default 5 ms delays hand-offs)"
    )
    embedding_cache_ttl_s: int = Field(7 * 24 * 3600, ge=0)
    text_vector_cache_size: int = Field(
        20_000,
        ge=0,
        le=10_000_000,
        description="text vectors kept in process memory (least recently used out; about 2-4 KB each), "
        "so repeated queries and tagging labels are not embedded again; 0 turns it off",
    )
    result_cache_ttl_s: int = Field(600, ge=0)

    # --- ingest over HTTP and index reloads -----------------------------------------------------
    allowed_ingest_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders HTTP ingest jobs may read; empty: jobs refused"
    )
    reload_poll_s: float = Field(
        5.0, gt=0, description="how often replicas check for a newly published index version besides the Redis notice"
    )
    job_queue: str = Field("clapsearch-ingest", description="Redis queue name of ingest jobs")

    @field_validator("api_keys", "cors_origins", "allowed_ingest_roots", mode="before")
    @classmethod
    def _comma_lists(cls, value):
        return _split_commas(value)

    def api_key_values(self) -> set[str]:
        return {key.get_secret_value() for key in self.api_keys}


class WorkerSettings(ServiceSettings):
    """``clapsearch-worker``: the API's settings (the same storage and model), with ONNX Runtime
    tuned as the ``indexer`` CLI is: a worker only ingests, so its threads use every core per
    batch and spin between back-to-back batches (the API leaves the cores to its event loop)."""

    onnx_threads: int | None = Field(0, ge=0, description="ONNX Runtime threads per call (0: one per core)")
    onnx_spinning: bool = Field(True, description="idle ONNX Runtime threads spin-wait for the next batch")
    db_timeout_s: float = Field(
        30.0, ge=0, description="as the indexer CLI: long ingest statements on large collections are no hang"
    )
    watch_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders the worker keeps in sync with a collection as files appear, change or go "
        "(comma-separated; as `indexer watch`; needs the 'watch' extra)",
    )
    watch_collection: str = Field("default", description="the collection the watched folders feed")

    @field_validator("watch_paths", mode="before")
    @classmethod
    def _watch_list(cls, value):
        return _split_commas(value)
