"""The search service benchmark's fixture (``bench/service.py`` describes it): query texts, a
CLAPSEARCH_HOME with ``n`` synthetic rows bound to the default model, published as an ingest
would, and the sizes of what the server loads."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

from machine import loadavg, status_bytes

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "clapsearch-sfx-v1"
COLLECTION = "bench"
K = 10
FIXTURE_FORMAT = 1

QUIET_PCT = 10.0  # a round is "quiet" when other processes took < 10 % of the CPUs meanwhile

# ----------------------------------------------------------------------------- query texts
SOUNDS = [
    "dog barking",
    "rain on a tin roof",
    "glass breaking",
    "door slamming",
    "footsteps on gravel",
    "thunder rumbling",
    "birds singing",
    "car engine starting",
    "church bells",
    "waves crashing",
    "a baby crying",
    "wind howling",
    "fire crackling",
    "a cat meowing",
    "a helicopter passing",
    "keys jingling",
    "a clock ticking",
    "water dripping",
    "a motorcycle revving",
    "applause",
    "a train horn",
    "a siren wailing",
    "a drum roll",
    "a wooden creak",
    "paper rustling",
    "a gunshot",
    "an explosion",
    "a phone ringing",
    "typing on a keyboard",
    "a kettle whistling",
    "a cow mooing",
    "a horse galloping",
    "a rooster crowing",
    "frogs croaking",
    "crickets chirping",
    "a stream flowing",
    "a waterfall",
    "heavy traffic",
    "a jet plane flying over",
    "a lawn mower",
    "a chainsaw",
    "a hammer hitting a nail",
    "a saw cutting wood",
    "a drill",
    "coins dropping",
    "a zipper",
    "a doorbell",
    "a car horn honking",
    "tyres screeching",
    "a crowd cheering",
    "a whistle blowing",
    "a sword clash",
    "a laser zap",
    "a magic chime",
    "a bubble popping",
    "a balloon bursting",
    "a squeaky toy",
    "a bass drum",
    "a snare hit",
    "a cymbal crash",
    "a piano note",
    "a guitar strum",
    "a bell ringing",
    "a gong",
    "a toilet flushing",
    "a shower running",
    "dishes clattering",
    "a microwave beep",
    "a vacuum cleaner",
    "a fan humming",
    "an owl hooting",
    "a wolf howling",
    "a lion roaring",
    "an elephant trumpeting",
    "bees buzzing",
    "a mosquito whine",
    "a seagull calling",
    "ducks quacking",
    "a goat bleating",
    "a pig grunting",
]
ADJECTIVES = (
    "loud distant soft close muffled echoing short long sharp deep quiet metallic wet dry heavy light rhythmic sudden"
    " repeated low"
).split()
PLACES = [
    "in the rain",
    "at night",
    "indoors",
    "outdoors",
    "in a forest",
    "in a city street",
    "in a small room",
    "in a large hall",
    "far away",
    "up close",
    "in a cave",
    "on a farm",
    "by the sea",
    "in a kitchen",
    "in a garage",
    "underwater",
    "in a car",
    "in the morning",
    "in a stadium",
    "in a factory",
]
CAPTION_TEMPLATES = ["the sound of {}", "{}"]


def caption_texts() -> list[str]:
    """The captions whose text embeddings anchor the synthetic clusters."""
    return [t.format(s) for s in SOUNDS for t in CAPTION_TEMPLATES]


def query_texts(seed: int = 0):
    """An endless stream of distinct queries: adjective x sound x place (32,000, shuffled), then
    the same with ' take N' appended."""
    combos = [f"{a} {s} {p}" for a in ADJECTIVES for s in SOUNDS for p in PLACES]
    random.Random(seed).shuffle(combos)
    yield from combos
    take = 2
    while True:
        for c in combos:
            yield f"{c} take {take}"
        take += 1


# ----------------------------------------------------------------------------- fixture
def open_store(home: Path):
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store

    # explicit values: the caller's CLAPSEARCH_* environment must not redirect the fixture
    settings = IndexerSettings(home=home, database_url=None, index_dir=None, model=MODEL, model_variant=None)
    return Store.open(settings, model=MODEL)


def anchored_generator(n: int, anchors, seed: int, weight: float):
    import numpy as np
    from index import Clustered  # bench/index.py's generator

    class Anchored(Clustered):
        """Clustered, with every cluster pulled towards one caption's text embedding."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            rng = np.random.default_rng([seed, 0xA2C])
            self.anchor_of = rng.integers(len(anchors), size=self.clusters)

        def draw(self, count, rng):
            x, c = self.draw_clustered(count, rng)
            x += weight * anchors[self.anchor_of[c]]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            return x

    gen = Anchored(anchors.shape[1], max(1, n // 40), seed=seed)
    gen.description = (
        gen.description + f"; then each cluster is pulled towards the text embedding of one of "
        f"{len(anchors)} sound captions (x + {weight} * caption, renormalised)"
    )
    return gen


def _heartbeat(label: str, t0: float, stop: threading.Event, every: float = 30.0) -> None:
    while not stop.wait(every):
        rss = status_bytes("VmRSS")
        print(
            f"  ... {label}: {time.perf_counter() - t0:.0f} s, RSS {rss / 2**20:,.0f} MiB, load {loadavg()}", flush=True
        )


def _reusable(stamp_path: Path, wanted: dict, home: Path, n: int) -> dict | None:
    """The stamp of a fixture built with the ``wanted`` values, else None."""
    if not stamp_path.exists():
        return None
    stamp = json.loads(stamp_path.read_text())
    if {k: stamp.get(k) for k in wanted} == wanted:
        print(
            f"fixture: reusing {home} ({n:,} vectors, built {stamp['built_at']} in {stamp['build_s']:.0f} s)",
            flush=True,
        )
        return stamp
    print(f"fixture: {home} was built with { ({k: stamp.get(k) for k in wanted}) }; rebuilding", flush=True)
    return None


def _insert_rows(store, collection, gen, n: int, seed: int) -> tuple[float, float]:
    """Bulk-inserts ``n`` indexed file rows (SQLAlchemy Core: the ingest's per-row ORM writes would
    take an hour at 1 M); returns (insert seconds, of which vector generation)."""
    import numpy as np
    from sqlalchemy import insert

    from indexer.store import catalog
    from indexer.store.schema import STATUS_INDEXED, File, FileVector, utcnow, vector_bytes

    with store.db.session() as s:
        generation = catalog.next_generation(s, collection.id)
    t0 = time.perf_counter()
    chunk, gen_s = 20_000, 0.0
    rng_meta = np.random.default_rng([seed, 7])
    now = utcnow()
    for ci, lo in enumerate(range(0, n, chunk)):
        hi = min(n, lo + chunk)
        g0 = time.perf_counter()
        x = gen.draw(hi - lo, np.random.default_rng([seed, 1, ci]))
        gen_s += time.perf_counter() - g0
        duration = rng_meta.uniform(0.3, 30.0, size=hi - lo)
        rows = [
            dict(
                collection_id=collection.id,
                path=f"lib/pack_{i // 1000:04d}/sfx_{i:07d}.wav",
                size=int(44 + d * 48_000 * 2),
                mtime_ns=1_700_000_000_000_000_000 + i,
                content_hash=None,
                duration_s=round(float(d), 3),
                format="WAV",
                subtype="PCM_16",
                sample_rate=48_000,
                channels=1,
                tags=None,
                status=STATUS_INDEXED,
                error_code=None,
                error=None,
                n_segments=0,
                generation=generation,
                updated_at=now,
            )
            for i, d in zip(range(lo, hi), duration)
        ]
        with store.db.engine.begin() as conn:  # rows, then their vectors (own table), in one transaction
            ids = conn.execute(insert(File).returning(File.id, sort_by_parameter_order=True), rows).scalars().all()
            conn.execute(insert(FileVector), [dict(file_id=f, vector=vector_bytes(v)) for f, v in zip(ids, x)])
        if ci % 10 == 0 or hi == n:
            print(f"  rows {hi:,}/{n:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0, gen_s


def _publish(store) -> tuple[object, float]:
    """``Store.publish`` exactly as an ingest would (plan, train, add, tune), with a heartbeat
    since it runs for minutes at 1 M; returns (the publish result, seconds)."""
    print("  publishing (plan, train, add, tune) ...", flush=True)
    t0 = time.perf_counter()
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=("publish", t0, stop), daemon=True).start()
    try:
        with store.lock(COLLECTION, wait=True):
            (result,) = store.publish(store.collection(COLLECTION))
    finally:
        stop.set()
    return result, time.perf_counter() - t0


def _index_record(result) -> dict:
    from indexer.store.vector_index import VectorIndex

    index = VectorIndex.load(result.version.folder)
    index_file = Path(result.version.folder) / "index.faiss"
    return {
        "describe": index.describe(),
        "params": index.params,
        "train_s": index.tuning.get("train_seconds"),
        "add_s": index.tuning.get("add_seconds"),
        "ntotal": index.ntotal,
        "version": result.version.version,
        "file_bytes": index_file.stat().st_size if index_file.exists() else None,
    }


def build_fixture(home: Path, n: int, seed: int, *, rebuild: bool = False) -> dict:
    """The fixture's stamp; builds it (database rows + published index) unless a matching one exists."""
    from indexer.models.manifest import load_manifest

    stamp_path = home / "fixture.json"
    fingerprint = load_manifest(MODEL).fingerprint
    wanted = {
        "format": FIXTURE_FORMAT,
        "n": n,
        "seed": seed,
        "model": str(MODEL.relative_to(REPO)),
        "model_fingerprint": fingerprint,
        "collection": COLLECTION,
    }
    stamp = None if rebuild else _reusable(stamp_path, wanted, home, n)
    if stamp is not None:
        return stamp | {"reused": True}
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    t_all = time.perf_counter()
    load0 = loadavg()
    store = open_store(home)
    try:
        captions = caption_texts()
        anchors = store.encoder().embed_text(captions)
        gen = anchored_generator(n, anchors, seed, weight=0.8)
        insert_s, gen_s = _insert_rows(store, store.open_collection(COLLECTION), gen, n, seed)
        result, publish_s = _publish(store)
        db_path = home / "clapsearch.db"
        stamp = wanted | {
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_s": round(time.perf_counter() - t_all, 1),
            "insert_s": round(insert_s, 1),
            "data_generation_s": round(gen_s, 1),
            "publish_s": round(publish_s, 1),
            "publish_mode": result.mode,
            "plan": result.plan.to_dict() if result.plan else None,
            "index": _index_record(result),
            "database_bytes": db_path.stat().st_size if db_path.exists() else None,
            "generator": gen.description,
            "captions": len(captions),
            "loadavg_before": load0,
            "loadavg_after": loadavg(),
        }
    finally:
        store.close()
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    print(
        f"fixture: built {home} in {stamp['build_s']:.0f} s (rows {stamp['insert_s']:.0f} s, publish "
        f"{stamp['publish_s']:.0f} s: {stamp['index']['describe']})",
        flush=True,
    )
    return stamp | {"reused": False}


def warm_database(home: Path) -> dict:
    """Read the SQLite file once so that the metadata join runs from the OS page cache, as on a
    server that has been up for a while (cold, each hit costs a random disk read: ~0.2 ms here)."""
    path = home / "clapsearch.db"
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 << 20):
            pass
    seconds = time.perf_counter() - t0
    print(
        f"database file read into the page cache: {path.stat().st_size / 2**30:.2f} GiB in {seconds:.1f} s", flush=True
    )
    return {"file_bytes": path.stat().st_size, "read_s": round(seconds, 2)}


def index_file_bytes(home: Path) -> int:
    files = sorted((home / "indexes").rglob("index.faiss"))
    return max((f.stat().st_size for f in files), default=0)


def model_file_bytes() -> dict:
    from indexer.models.manifest import load_manifest

    manifest = load_manifest(MODEL)
    files = manifest.variants[manifest.default_variant]
    out = {"variant": manifest.default_variant}
    for tower in ("audio", "text"):
        out[f"{tower}_bytes"] = (MODEL / getattr(files, tower)).stat().st_size
    out["total_bytes"] = out["audio_bytes"] + out["text_bytes"]
    return out
