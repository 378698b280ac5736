#!/usr/bin/env python
"""Probe: would IVF fast-scan PQ with an SQ8 refine beat the planner's IVF-SQ8 on the hard set?

    python bench/index_fastscan.py --kept /tmp/scale/hard --spread-min 1.5 --spread-max 2.5 --noise 0.3

Not an index the store can build yet (``VectorIndex`` has no refine step, no k_factor tuning and
``IndexRefine`` cannot remove ids): this measures the idea on the data of ``bench/index.py``.
It reuses the coarse quantizer (the k-means centroids) of an index ``bench/index.py --index-dir``
kept, so only the PQ and SQ8 codebooks are trained here, builds ``IVF{nlist},PQ{m}x4fs`` +
``Refine(SQ8)`` over the same 1 M vectors, and times it against exact search on the same
held-out queries, for a few (nprobe, k_factor), in alternating rounds like ``bench/index.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index import Clustered, K  # noqa: E402  (bench/index.py)
from machine import cpu_info, loadavg, timed  # noqa: E402

from indexer.store.index_tuning import recall_at_k  # noqa: E402
from indexer.store.vector_index import VectorIndex  # noqa: E402


def build(args, gen: Clustered, centroids: np.ndarray, db: np.ndarray):
    dim, nlist = centroids.shape[1], len(centroids)
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    ivf = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, args.pq_m, 4, faiss.METRIC_INNER_PRODUCT)
    refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefine(ivf, refine)
    t0 = time.perf_counter()
    index.train(db[: args.train])  # the quantizer is trained already: PQ and SQ8 codebooks only
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.add(db)
    return index, ivf, {"train_s": round(train_s, 1), "add_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kept", type=Path, required=True, help="an index folder kept by bench/index.py --index-dir")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--spread-min", type=float, default=0.7)
    ap.add_argument("--spread-max", type=float, default=1.2)
    ap.add_argument("--noise", type=float, default=0.15)
    ap.add_argument("--pq-m", type=int, default=256, help="4-bit sub-quantizers (m/2 bytes a vector)")
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results_index_fastscan.json"))
    args = ap.parse_args(argv)
    gen = Clustered(
        args.dim, max(1, args.n // 40), spread=(args.spread_min, args.spread_max), noise=args.noise, seed=args.seed
    )
    db = np.concatenate([x for _, x in gen.stream(args.n, 50_000, args.seed)])
    queries = gen.draw(args.queries, np.random.default_rng([args.seed, 3]))  # bench/index.py's held-out set
    loaded = VectorIndex.load(args.kept)  # held: the extracted IVF points into it
    kept = faiss.extract_index_ivf(loaded.index)
    centroids = kept.quantizer.reconstruct_n(0, kept.nlist)
    nlist = kept.nlist
    del kept, loaded
    index, ivf, build_s = build(args, gen, centroids, db)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(db)
    del db
    faiss.omp_set_num_threads(args.threads)
    _, gt = exact.search(queries, K)
    rows = []
    for nprobe, k_factor in ((32, 4), (32, 8), (48, 4), (48, 8), (64, 4), (64, 8)):
        ivf.nprobe, index.k_factor = nprobe, float(k_factor)
        _, found = index.search(queries, K)
        ratios = []
        for _ in range(2):
            te, _, oe = timed(lambda: exact.search(queries, K))
            ti, _, oi = timed(lambda: index.search(queries, K))
            ratios.append({"exact_s": te, "index_s": ti, "other_cpu_s": round(oe + oi, 1)})
        ratio = float(np.median([r["exact_s"] / r["index_s"] for r in ratios]))
        recall = recall_at_k(found, gt, K)
        rows.append(
            {"nprobe": nprobe, "k_factor": k_factor, "recall_at_10": round(recall, 4), "speedup": round(ratio, 1)}
        )
        rows[-1]["rounds"] = ratios
        print(f"nprobe {nprobe} k_factor {k_factor}: recall@10 {recall:.4f}, {ratio:.1f}x exact", flush=True)
    result = {
        "machine": cpu_info(),
        "factory": f"IVF{nlist},PQ{args.pq_m}x4fs,Refine(SQ8)",
        "args": {k: str(v) for k, v in vars(args).items()},
        "build": build_s,
        "bytes_per_vector": args.pq_m // 2 + args.dim + 8,
        "threads": args.threads,
        "loadavg": loadavg(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
