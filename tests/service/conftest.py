"""Shared fixtures of the API tests: one generated library ingested once per session with the
shipped default model, and factories for apps (TestClient) with setting overrides.

The library (``LIB``) has files in several formats, with and without tags, one long file (four
10 s windows with ``segments``) and one garbage file that fails to ingest. Everything known about
it (format, duration, tags) is recorded here, so tests check the API against what was written,
not against what the API itself says.

Ingest spawns decoder processes: it only ever runs inside fixtures or tests, never at import.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import tone
from tests.indexer.library import write

MODEL = Path(__file__).resolve().parents[2] / "models" / "clapsearch-sfx-v1"
SR = 16_000
PROBLEM_KEYS = {"type", "title", "status", "code"}
DOTTED_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")  # docs/errors.md: every code is family.name


# ----------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class Track:
    rel: str
    format: str
    seconds: float
    freq: float
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.rel).name


TRACKS = [
    *(Track(f"tones/tone_{f}.wav", "WAV", 1.5 + 0.5 * i, f) for i, f in enumerate((220, 440, 880, 1760, 330, 660))),
    Track("long/drone.flac", "FLAC", 25.0, 300),
    Track("tagged/rain.flac", "FLAC", 2.0, 500, {"title": "Heavy Rain", "genre": "Ambient"}),
    Track("tagged/birds.ogg", "OGG", 2.5, 1200, {"title": "Morning Birds", "genre": "Nature"}),
    Track("tagged/roof.wav", "WAV", 3.0, 700, {"title": "Rain on roof", "genre": "Ambient"}),
    Track("other/hum.ogg", "OGG", 5.0, 120),
    Track("other/beep.mp3", "MP3", 1.5, 2000),
]
SEGMENT_S, HOP_S = 10.0, 5.0
LONG = "drone.flac"
FAILED_REL = "bad/garbage.wav"
_SUBTYPE = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}


@dataclass
class Library:
    root: Path
    tracks: dict[str, Track]  # file name -> what was written

    def path(self, name: str) -> Path:
        return self.root / self.tracks[name].rel

    @property
    def failed(self) -> Path:
        return self.root / FAILED_REL

    def names(self) -> set[str]:
        return set(self.tracks)


def write_track(root: Path, track: Track, seed: int = 0) -> Path:
    path = root / track.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", SR, 1, format=track.format, subtype=_SUBTYPE[track.format]) as out:
        for key, value in track.tags.items():
            setattr(out, key, value)
        out.write(tone(track.seconds, SR, freq=track.freq, seed=seed))
    return path


def write_new_file(root: Path, name: str = "fresh_chirp.wav", *, seconds: float = 2.0, freq: float = 3100.0) -> Path:
    """A file that is not in the session library (for hot reload and cache invalidation)."""
    return write(root / name, seconds, sr=SR, freq=freq, seed=42)


def ingest(home: Path, paths: list[Path], *, segments: bool = True, database_url: str | None = None):
    """``run_ingest`` into ``home`` (the indexer's own pipeline, as `indexer ingest` runs it)."""
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.settings import IndexerSettings
    from indexer.store.catalog import SegmentSpec
    from indexer.store.store import Store

    store = Store.open(IndexerSettings(home=home, model=MODEL, database_url=database_url, index_dir=None))
    try:
        report = run_ingest(
            store,
            IngestOptions(
                paths=[str(p) for p in paths], workers=1, segments=SegmentSpec(SEGMENT_S, HOP_S) if segments else None
            ),
        )
    finally:
        store.close()
    return report.stats


@pytest.fixture(scope="session")
def library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("library")
    for i, track in enumerate(TRACKS):
        write_track(root, track, seed=i)
    (root / FAILED_REL).parent.mkdir(parents=True, exist_ok=True)
    (root / FAILED_REL).write_bytes(np.random.default_rng(1).bytes(4000))
    return Library(root, {t.name: t for t in TRACKS})


@pytest.fixture(scope="session")
def ingested_home(library, tmp_path_factory) -> Path:
    """The library ingested (with segments) into a fresh home. Read-only: copy it to mutate."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    home = tmp_path_factory.mktemp("home")
    stats = ingest(home, [library.root])
    assert stats.embedded == len(TRACKS) and stats.failed == 1, stats
    with TestClient(create_app(service_settings(home))) as warm:
        settle(warm)  # the label vocabulary's vectors are now cached in the home
    return home


@pytest.fixture
def home_copy(ingested_home, tmp_path) -> Path:
    """A private copy of the ingested home, for tests that ingest into it or change it."""
    target = tmp_path / "home"
    shutil.copytree(ingested_home, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def item_ids(ingested_home, library) -> dict[str, int]:
    """file name -> item id (the failed file included, as "garbage.wav")."""
    with sqlite3.connect(ingested_home / "clapsearch.db") as db:
        rows = db.execute("SELECT id, path FROM files").fetchall()
    return {Path(path).name: int(i) for i, path in rows}


# ----------------------------------------------------------------------------- apps


def service_settings(home: Path, **overrides):
    """Settings for a test app: the defaults (the environment is ignored: tests/conftest.py),
    the test library's home and model, then the test's overrides."""
    from service.settings import ServiceSettings

    base = dict(
        home=home, model=MODEL, reload_poll_s=60.0, embedding_cache_ttl_s=900, result_cache_ttl_s=900
    )  # short: Redis outlives runs
    base.update(overrides)
    return ServiceSettings(**base)


@pytest.fixture
def open_client(ingested_home):
    """``open_client(home=None, **setting_overrides) -> TestClient`` (lifespan started; closed
    at the end of the test)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with ExitStack() as stack:

        def _open(home: Path | None = None, **overrides) -> TestClient:
            app = create_app(service_settings(home or ingested_home, **overrides))
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            stack.callback(settle, client)  # runs before the client closes
            return client

        yield _open


@pytest.fixture(scope="session")
def client(ingested_home):
    """One app with default settings over the shared home, for tests that only read."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(service_settings(ingested_home)), raise_server_exceptions=False) as c:
        yield c
        settle(c)


# ----------------------------------------------------------------------------- helpers


def settle(client) -> None:
    """Wait for the app's background embedding of the label vocabulary (a daemon thread that
    closing the app does not stop; killed mid-ONNX-call at interpreter exit, it aborts)."""
    runtime = getattr(client.app.state, "runtime", None)
    if runtime is not None and runtime.vocabulary is not None and runtime.encoder is not None:
        runtime.vocabulary.vectors(runtime.encoder.embed_text)


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """``response`` is an RFC 9457 problem with ``status`` (and ``code``, when given)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert PROBLEM_KEYS <= set(body), body
    assert body["status"] == status
    assert body["type"] == f"/problems/{body['code']}"
    assert DOTTED_CODE.fullmatch(body["code"]), f"codes are dotted (family.name): {body['code']!r}"
    if code is not None:
        assert body["code"] == code, body
    return body


def valid_search(response) -> dict:
    """The body of a 200 search answer, checked against the documented response model (the
    search routes serialise their answers themselves, bypassing FastAPI's validation)."""
    from service.schemas import SearchHit, SearchResponse

    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    SearchResponse.model_validate(body, strict=True)
    assert set(body) == set(SearchResponse.model_fields)
    for hit in body["items"]:
        assert set(hit) == set(SearchHit.model_fields)
    return body


def names(response) -> list[str]:
    assert response.status_code == 200, response.text[:500]
    return [hit["name"] for hit in response.json()["items"]]


def ranking(response) -> list[tuple[int, float]]:
    assert response.status_code == 200, response.text[:500]
    return [(hit["id"], hit["score"]) for hit in response.json()["items"]]


def metric_samples(text: str, name: str) -> dict[tuple, float]:
    """Prometheus samples named ``name``: {sorted label items: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def sync_api():
    """Playwright's sync API driving Debian's chromium (the browser tests)."""
    from tests.helpers import unavailable
    from tests.service.browser import CHROMIUM

    if not Path(CHROMIUM).is_file():
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError as exc:
        unavailable(f"playwright is not installed: {exc}")
    return sync_api
