#!/usr/bin/env python
"""A search hit's metadata lookup with the vectors in the rows (migration 0003) and apart (0004).

    python bench/metadata_join.py --n 200000 --out bench/results_metadata_join.json
    python bench/metadata_join.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Both layouts are built side by side in one SQLite file and one PostgreSQL database (tables
``mj_inline_files``: the files columns with a 2 KB ``vector`` among them, as before migration 0004;
``mj_split_files`` + ``mj_split_vectors``: the same rows without it, the vectors in their own
table) and filled with the same ``--n`` rows. Then ``--lookups`` times: 10 random ids, the
columns a search result shows (``indexer/search.py`` ``Searcher._rows``: id, path, duration,
format, tags) by ``id IN (...)``, alternating between the layouts so both see the same load. The
page cache is warm (the OS's; SQLite's own is its default 2 MB): what differs is how many pages
the 10 rows are spread over and how large the table is that has to stay cached. Reported: per
lookup median / p90 ms, and the bytes each table takes on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_info, loadavg, write_results  # noqa: E402

LAYOUTS = ("inline", "split")
COLUMNS = (
    "id {id} PRIMARY KEY, collection_id INTEGER NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL, "
    "mtime_ns BIGINT NOT NULL, content_hash VARCHAR(64), duration_s FLOAT, format VARCHAR(40), "
    "subtype VARCHAR(40), sample_rate INTEGER, channels INTEGER, tags TEXT, words TEXT, "
    "status VARCHAR(16) NOT NULL, error_code VARCHAR(60), error TEXT, {vector}n_segments INTEGER NOT NULL, "
    "generation BIGINT NOT NULL, updated_at VARCHAR(40)"
)
LOOKUP = "SELECT id, path, duration_s, format, tags FROM mj_{layout}_files WHERE id IN ({ids})"


def _row(i: int, rng: np.random.Generator) -> dict:
    category = ("impacts", "ambience", "foley", "vehicles", "weapons", "nature")[i % 6]
    name = f"{category}_{rng.integers(1 << 30):x}_take{i % 7}"
    tags = {"title": name.replace("_", " "), "artist": "Field Recordist", "album": f"{category} vol {i % 40}"}
    return dict(
        id=i + 1,
        collection_id=1,
        path=f"/srv/library/sfx/{category}/{category}_{i % 97:02d}/{name}.wav",
        size=int(rng.integers(10_000, 50_000_000)),
        mtime_ns=1_700_000_000_000_000_000 + i,
        content_hash=f"{rng.integers(1 << 62):016x}" * 4,
        duration_s=float(rng.uniform(0.2, 120)),
        format="WAV",
        subtype="PCM_24",
        sample_rate=48_000,
        channels=2,
        tags=json.dumps(tags),
        words=" ".join([*name.split("_"), category, "sfx", "library", *tags["album"].split()]),
        status="indexed",
        n_segments=0,
        generation=i // 1000,
        updated_at="2026-12-06T00:00:00+00:00",
    )


def build(engine: sa.Engine, n: int, dim: int, seed: int) -> None:
    pk = "INTEGER" if engine.dialect.name == "sqlite" else "BIGINT"
    blob = "BLOB" if engine.dialect.name == "sqlite" else "BYTEA"
    with engine.begin() as conn:
        for table in ("mj_split_vectors", "mj_split_files", "mj_inline_files"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE mj_inline_files ({COLUMNS.format(id=pk, vector=f'vector {blob}, ')})"))
        conn.execute(sa.text(f"CREATE TABLE mj_split_files ({COLUMNS.format(id=pk, vector='')})"))
        conn.execute(
            sa.text(
                f"CREATE TABLE mj_split_vectors (file_id {pk} PRIMARY KEY REFERENCES mj_split_files(id) "
                f"ON DELETE CASCADE, vector {blob} NOT NULL)"
            )
        )
    rng = np.random.default_rng(seed)
    names = ", ".join(_row(0, rng))
    values = ", ".join(f":{k}" for k in _row(0, rng))
    for start in range(0, n, 5000):
        rows = [_row(i, rng) for i in range(start, min(n, start + 5000))]
        vectors = rng.standard_normal((len(rows), dim)).astype("<f4")
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO mj_inline_files ({names}, vector) VALUES ({values}, :vector)"),
                [{**r, "vector": v.tobytes()} for r, v in zip(rows, vectors)],
            )
            conn.execute(sa.text(f"INSERT INTO mj_split_files ({names}) VALUES ({values})"), rows)
            conn.execute(
                sa.text("INSERT INTO mj_split_vectors (file_id, vector) VALUES (:id, :vector)"),
                [{"id": r["id"], "vector": v.tobytes()} for r, v in zip(rows, vectors)],
            )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE mj_inline_files, mj_split_files, mj_split_vectors"))


def sizes(engine: sa.Engine) -> dict:
    """Bytes on disk per table (PostgreSQL: heap, and heap + TOAST + indexes)."""
    out = {}
    with engine.connect() as conn:
        for table in ("mj_inline_files", "mj_split_files", "mj_split_vectors"):
            if engine.dialect.name == "sqlite":
                q = "SELECT sum(pgsize) FROM dbstat WHERE name = :t"
                out[table] = {"bytes": int(conn.execute(sa.text(q), {"t": table}).scalar() or 0)}
            else:
                q = "SELECT pg_relation_size(:t), pg_total_relation_size(:t)"
                heap, total = conn.execute(sa.text(q), {"t": table}).one()
                out[table] = {"heap_bytes": int(heap), "total_bytes": int(total)}
    return out


def time_lookups(engine: sa.Engine, n: int, lookups: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    with engine.connect() as conn:
        for i in range(lookups):
            ids = ", ".join(str(int(x)) for x in rng.choice(n, 10, replace=False) + 1)
            for layout in LAYOUTS if i % 2 else LAYOUTS[::-1]:
                t0 = time.perf_counter()
                rows = conn.execute(sa.text(LOOKUP.format(layout=layout, ids=ids))).all()
                times[layout].append(time.perf_counter() - t0)
                assert len(rows) == 10
    out = {}
    for layout, ts in times.items():
        ms = np.asarray(ts[lookups // 10 :]) * 1e3  # the first tenth warms the caches
        out[layout] = {"median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4)}
    out["split_speedup_median"] = round(out["inline"]["median_ms"] / out["split"]["median_ms"], 2)
    return out


def run_one(url: str, args) -> dict:
    engine = sa.create_engine(url)
    try:
        t0 = time.perf_counter()
        build(engine, args.n, args.dim, args.seed)
        built = time.perf_counter() - t0
        return {
            "dialect": engine.dialect.name,
            "build_s": round(built, 1),
            "sizes": sizes(engine),
            "lookups": time_lookups(engine, args.n, args.lookups, args.seed),
            "loadavg_after": loadavg(),
        }
    finally:
        if not args.keep:
            with engine.begin() as conn:
                for table in ("mj_split_vectors", "mj_split_files", "mj_inline_files"):
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--lookups", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sqlite-dir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)")
    ap.add_argument("--postgres-url", default=None, help="also measure PostgreSQL at this URL")
    ap.add_argument("--keep", action="store_true", help="keep the tables")
    ap.add_argument("--out", type=Path, default=Path("bench/results_metadata_join.json"))
    args = ap.parse_args(argv)
    if args.n < 10 or args.lookups < 10:
        ap.error("--n and --lookups must be at least 10")
    started = time.perf_counter()
    results: dict = {"machine": cpu_info(), "n": args.n, "dim": args.dim, "loadavg_before": loadavg()}
    with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as tmp:
        results["sqlite"] = run_one(f"sqlite:///{Path(tmp) / 'join.db'}", args)
    if args.postgres_url:
        results["postgresql"] = run_one(args.postgres_url, args)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
