#!/usr/bin/env python
"""FAISS index benchmark: the planned index vs exact search at 1 M synthetic 512-d unit vectors.

    python bench/index.py                                    # 1 M x 512-d, 4 GiB budget -> bench/results_index.json
    python bench/index.py --budget-gb 0.75 --out bench/results_index_sq8.json   # a budget that forces SQ8
    python bench/index.py --n 20000 --dim 64 --queries 50    # smoke run (tests/bench/test_index.py)

Target (issue 5): recall@10 >= 0.95 against exact search at >= 20x exact queries/s, memory reported.

Data: clustered unit vectors with a low intrinsic dimension, as embeddings have. In a
``--latent``-d space (default 64), ``--topics`` topic centres N(0, I) each spawn cluster centres
(topic + 0.7 N(0, I)); ``--clusters`` clusters in all (default n / 40, 25,000 at 1 M) with
log-normal sizes (a few big clusters, many small ones). A point is its cluster's centre plus the
cluster's spread (uniform in [``--spread-min``, ``--spread-max``]) times a Gaussian whose axis
variances decay as i^-2 in a random axis order per cluster, so each cluster is locally
low-dimensional in its own directions and neighbouring clusters overlap. A fixed random linear
map lifts that to ``--dim``; isotropic noise (``--noise`` x the norm) fills every dimension; then
L2-normalisation. The JSON reports how hard that is: the mean cosine of a held-out query to its
1st and 10th exact neighbour and to a random vector, and recall at nprobe 1.

The database streams in deterministic chunks (chunk i from seed (seed, i)), so the index is built
through ``VectorIndex.build`` with a one-pass generator and the exact ``IndexFlatIP`` is filled
from a second pass over the same chunks. The training sample and the held-out queries are fresh
draws from the same distribution (a database would sample its own rows for training); tuning uses
200 random sample rows, recall is measured on the held-out queries only.

Timing: both indexes answer the same query batch (``--queries`` at once, k=10) with FAISS's
default OpenMP threads (``--search-threads``: fewer), in ``--rounds`` rounds of one exact search
then the planned index's search repeated (median of >= 3 calls and >= 2 s); queries/s = queries / median time, the ratio
is the median of the per-round ratios. Before each timed round the script waits (up to
``--wait-quiet`` s) for other processes to go quiet and it reports the CPU they took meanwhile.

Memory: the serialised index size, ``VectorIndex.memory_bytes`` (codes + ids + centroids), the RSS
a fresh process gains by loading the saved index, and the RSS growth across the build (an upper
bound: it includes allocator slack and the inverted lists' spare capacity).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss
from machine import cpu_info, loadavg, status_bytes, timed, wait_quiet  # noqa: E402

from indexer.store.index_tuning import recall_at_k
from indexer.store.vector_index import VectorIndex, plan_index

K = 10


# ----------------------------------------------------------------------------- data
class Clustered:
    """Clustered unit vectors of low intrinsic dimension (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        clusters: int,
        *,
        latent: int = 64,
        topics: int = 1000,
        offset: float = 0.7,
        spread: tuple[float, float] = (0.7, 1.2),
        decay: float = 2.0,
        noise: float = 0.15,
        seed: int = 0,
    ):
        rng = np.random.default_rng([seed, 0xC1A5])
        self.dim, self.latent, self.noise, self.clusters = dim, latent, noise, clusters
        self.lift = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)
        topic = rng.standard_normal((topics, latent))
        self.centres = (
            topic[rng.integers(topics, size=clusters)] + offset * rng.standard_normal((clusters, latent))
        ).astype(np.float32)
        self.spread = rng.uniform(*spread, size=clusters).astype(np.float32)
        # axis standard deviations decay as i^(-decay/2) (mean variance 1), in a random order per cluster
        axis_sd = np.arange(1, latent + 1) ** (-decay / 2)
        axis_sd *= np.sqrt(latent / np.sum(axis_sd**2))
        self.axis_sd = np.stack([rng.permutation(axis_sd) for _ in range(clusters)]).astype(np.float32)
        w = rng.lognormal(0.0, 1.0, size=clusters)
        self.weights = w / w.sum()
        self.description = (
            f"{clusters:,} clusters with log-normal sizes; centres = one of {topics:,} topic centres N(0, I) + "
            f"{offset} N(0, I) in a {latent}-d latent space; a point = its centre + spread (uniform "
            f"{spread[0]}-{spread[1]} per cluster) x N(0, diag(i^-{decay})) with the axes in a random order per "
            f"cluster (so every cluster is locally low-dimensional in its own directions); lifted to {dim}-d by "
            f"a fixed random linear map, plus isotropic noise of {noise} x the norm, L2-normalised"
        )

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.draw_clustered(n, rng)[0]

    def draw_clustered(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, their cluster numbers)."""
        c = rng.choice(self.clusters, size=n, p=self.weights)
        z = rng.standard_normal((n, self.latent), dtype=np.float32)
        z *= self.spread[c, None] * self.axis_sd[c]
        z += self.centres[c]
        x = z @ self.lift
        scale = self.noise * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(self.dim)
        x += scale * rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, c

    def stream(self, n: int, chunk: int, seed: int, clock: list | None = None):
        """(ids, vectors) chunks of the database; ids = row numbers; generation time added to clock[0]."""
        for i, lo in enumerate(range(0, n, chunk)):
            t0 = time.perf_counter()
            x = self.draw(min(chunk, n - lo), np.random.default_rng([seed, 1, i]))
            if clock is not None:
                clock[0] += time.perf_counter() - t0
            yield np.arange(lo, lo + len(x), dtype=np.int64), x


# ----------------------------------------------------------------------------- measurement helpers
def _loaded_rss(folder: Path) -> int:
    """RSS a fresh process gains by loading the saved index (no build leftovers, no list slack)."""
    code = (
        "import gc, sys; sys.path.insert(0, sys.argv[1])\n"
        "from indexer.store.vector_index import VectorIndex\n"
        "rss = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024\n"
        "gc.collect(); before = rss(); index = VectorIndex.load(sys.argv[2]); print(rss() - before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]), str(folder)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _build_args(args) -> dict:
    """The arguments that decide the index (a kept one is reused only when they match). An unset
    ``--flat-max-gb`` is left out, so indexes kept before that option existed still match."""
    skip = ("out", "queries", "rounds", "wait_quiet", "index_dir", "search_threads")
    return {k: v for k, v in vars(args).items() if k not in skip and not (k == "flat_max_gb" and v is None)}


def _median(xs) -> float:
    return float(np.median(xs))


def _repeat(fn, min_s: float) -> tuple[float, float]:
    """Median seconds of repeated calls (at least 3, and at least ``min_s`` in all); other CPU-s."""
    times, other = [], 0.0
    while len(times) < 3 or sum(times) < min_s:
        t, _, o = timed(fn)
        times.append(t)
        other += o
    return float(np.median(times)), other


def machine_info() -> dict:
    info = cpu_info("hypervisor") | {
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "faiss_compile": faiss.get_compile_options().strip(),
    }
    with open("/proc/meminfo") as fh:
        info["mem_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    return info


# ----------------------------------------------------------------------------- the run
def _timed_rounds(args, exact, index, queries: np.ndarray, gt_i: np.ndarray) -> list[dict]:
    """Exact and index search timed in alternating rounds, each after waiting for a quiet machine."""
    rounds = []
    for r in range(args.rounds):
        waited = wait_quiet(args.wait_quiet)
        load = loadavg()
        te, (_, ie), oe = timed(lambda: exact.search(queries, K))
        ti, oi = _repeat(lambda: index.search(queries, K), min_s=max(0.2, min(2.0, te)))
        assert np.array_equal(ie, gt_i)
        rounds.append(
            {
                "exact_s": te,
                "index_s": ti,
                "ratio": te / ti,
                "other_cpu_s": round(oe + oi, 2),
                "waited_s": round(waited, 1),
                "loadavg_before": load,
            }
        )
        print(
            f"round {r}: exact {len(queries) / te:,.0f} q/s, index {len(queries) / ti:,.0f} q/s, "
            f"x{te / ti:.1f} (other processes {oe + oi:.2f} CPU-s)",
            flush=True,
        )
    return rounds


def _nprobe_sweep(index, plan, queries: np.ndarray, gt_i: np.ndarray) -> list[dict]:
    """Recall and queries/s around the tuned nprobe (none for a flat index)."""
    sweep = []
    if plan.kind != "flat":
        tuned = int(index.params["nprobe"])
        for nprobe in sorted({1, max(1, tuned // 4), max(1, tuned // 2), tuned, tuned * 2, tuned * 4}):
            if nprobe > plan.nlist:
                continue
            _, f = index.search(queries, K, params={"nprobe": nprobe})
            t, _ = _repeat(lambda p=nprobe: index.search(queries, K, params={"nprobe": p}), min_s=1.0)
            sweep.append(
                {"nprobe": nprobe, "recall_at_10": round(recall_at_k(f, gt_i, K), 4), "qps": round(len(queries) / t, 1)}
            )
    return sweep


def build_or_reuse(args, gen: Clustered, plan) -> tuple[VectorIndex, dict]:
    """The index under test and its build figures: built now, or (``--index-dir``) one this script
    built and kept earlier with the same arguments, with the build figures from then."""
    saved = args.index_dir / "build.json" if args.index_dir else None
    if saved is not None and saved.exists():
        # re-time an index this script built and kept earlier (same arguments): build figures from then
        build = json.loads(saved.read_text())
        if build["args"] != _build_args(args):
            raise SystemExit(f"{args.index_dir} was built with other arguments: {build['args']}")
        index = VectorIndex.load(args.index_dir)
        print(f"reusing the index in {args.index_dir} (built {build['built_at']})", flush=True)
    else:
        sample = gen.draw(plan.train_size, np.random.default_rng([args.seed, 2])) if plan.train_size else None
        gc.collect()
        rss0, clock = status_bytes("VmRSS"), [0.0]
        t0 = time.perf_counter()
        index = VectorIndex.build(
            plan,
            gen.stream(args.n, args.chunk, args.seed, clock),
            sample=sample,
            k=K,
            target_recall=args.target_recall,
            use_gpu="never",
            seed=args.seed,
        )
        build_s = time.perf_counter() - t0
        gc.collect()
        rss_growth = status_bytes("VmRSS") - rss0  # the sample is still held, as it was at rss0
        del sample
        print(f"built in {build_s:.1f} s ({clock[0]:.1f} s of it generating data): {index.params}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.index_dir or Path(tmp)
            index.save(folder)
            file_bytes = sum(p.stat().st_size for p in folder.glob("*.faiss"))  # + refine.faiss
            loaded_rss = _loaded_rss(folder)
        build = {
            "args": _build_args(args),
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "total_s": round(build_s, 2),
            "data_generation_s": round(clock[0], 2),
            "train_s": index.tuning.get("train_seconds"),
            "add_s": index.tuning.get("add_seconds"),
            "index_file_bytes": file_bytes,
            "rss_growth_bytes": rss_growth,
            "loaded_rss_bytes": loaded_rss,
            "peak_rss_after_build": status_bytes("VmHWM"),
            "other_processes_load": loadavg(),
        }
        if saved is not None:
            saved.write_text(json.dumps(build, indent=2) + "\n")
    return index, build


def exact_index(args, gen: Clustered) -> tuple[faiss.IndexFlatIP, float]:
    """The exact (flat inner-product) index of the same vectors, the peer; and its build seconds."""
    t0 = time.perf_counter()
    exact = faiss.IndexFlatIP(args.dim)
    for _, x in gen.stream(args.n, args.chunk, args.seed):
        exact.add(x)
    return exact, time.perf_counter() - t0


def run(args) -> dict:
    n, dim = args.n, args.dim
    gen = Clustered(
        dim,
        args.clusters or max(1, n // 40),
        latent=args.latent,
        topics=args.topics,
        spread=(args.spread_min, args.spread_max),
        noise=args.noise,
        seed=args.seed,
    )
    flat_max = {} if args.flat_max_gb is None else {"flat_max_bytes": int(args.flat_max_gb * 2**30)}
    plan = plan_index(n, dim, memory_budget_bytes=int(args.budget_gb * 2**30), exact_below=args.exact_below, **flat_max)
    print(f"plan: {plan.kind} {plan.factory}: {plan.reason}", flush=True)
    queries = gen.draw(args.queries, np.random.default_rng([args.seed, 3]))

    index, build = build_or_reuse(args, gen, plan)

    exact, exact_build_s = exact_index(args, gen)
    gt_s, gt_i = exact.search(queries, K)
    difficulty = {
        "mean_cos_nn1": float(gt_s[:, 0].mean()),
        "mean_cos_nn10": float(gt_s[:, K - 1].mean()),
        "mean_cos_random": float(
            np.mean(np.sum(queries * gen.draw(len(queries), np.random.default_rng([args.seed, 4])), axis=1))
        ),
    }

    if args.search_threads:  # searches only: the build above ran with FAISS's default threads
        faiss.omp_set_num_threads(args.search_threads)
    rounds = _timed_rounds(args, exact, index, queries, gt_i)
    _, found = index.search(queries, K)
    recall = recall_at_k(found, gt_i, K)
    sweep = _nprobe_sweep(index, plan, queries, gt_i)

    exact_qps, index_qps = (
        len(queries) / _median([r["exact_s"] for r in rounds]),
        len(queries) / _median([r["index_s"] for r in rounds]),
    )
    ratio = _median([r["ratio"] for r in rounds])
    return {
        "command": " ".join([".venv/bin/python", "bench/index.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "data": {
            "n": n,
            "dim": dim,
            "generator": gen.description,
            "queries": len(queries),
            "held_out_queries": True,
            "difficulty": {k: round(v, 4) for k, v in difficulty.items()},
        },
        "plan": plan.to_dict(),
        "index": {"describe": index.describe(), "params": index.params, "tuning": index.tuning, "ntotal": index.ntotal},
        "build": {
            k: build[k]
            for k in ("built_at", "total_s", "data_generation_s", "train_s", "add_s", "other_processes_load")
        }
        | {"exact_flat_build_s": round(exact_build_s, 2)},
        "memory": {
            "index_file_bytes": build["index_file_bytes"],
            "memory_bytes_estimate": index.memory_bytes,
            "planned_bytes": plan.estimated_bytes,
            "loaded_rss_bytes": build["loaded_rss_bytes"],
            "rss_growth_bytes": build["rss_growth_bytes"],
            "peak_rss_after_build": build["peak_rss_after_build"],
            "peak_rss_bytes": status_bytes("VmHWM"),
            "exact_flat_bytes": n * dim * 4,
            "budget_bytes": int(args.budget_gb * 2**30),
        },
        "search": {
            "k": K,
            "threads": faiss.omp_get_max_threads(),
            "exact_qps": round(exact_qps, 1),
            "index_qps": round(index_qps, 1),
            "speedup": round(ratio, 2),
            "recall_at_10": round(recall, 4),
            "rounds": rounds,
            "nprobe_sweep": sweep,
        },
        "target": {"recall_at_10_min": 0.95, "speedup_min": 20.0, "met": bool(recall >= 0.95 and ratio >= 20.0)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries (timed as one batch)")
    ap.add_argument("--budget-gb", type=float, default=4.0, help="index memory budget in GiB")
    ap.add_argument(
        "--flat-max-gb",
        type=float,
        default=None,
        help="plan_index's flat_max_bytes in GiB (default: the planner's); a large value keeps IVF-Flat",
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results_index.json"))
    ap.add_argument("--clusters", type=int, default=0, help="default n / 40")
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--latent", type=int, default=64, help="intrinsic dimension of the generator")
    ap.add_argument("--spread-min", type=float, default=0.7, help="per-cluster spread, low end")
    ap.add_argument("--spread-max", type=float, default=1.2, help="per-cluster spread, high end (larger: harder)")
    ap.add_argument("--noise", type=float, default=0.15, help="isotropic noise relative to the norm")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--exact-below", type=int, default=50_000, help="plan_index's exact_below")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait-quiet", type=float, default=60.0, help="max s to wait for a quiet machine per round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--search-threads",
        type=int,
        default=0,
        help="FAISS threads for the timed searches (0: its default). On a loaded machine the 2-thread exact "
        "search slowed more than the index's (ratio 36-46x loaded vs 21x quiet); 1 thread is less sensitive",
    )
    ap.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        help="keep the built index here; a later run with the same arguments re-times it instead of rebuilding",
    )
    args = ap.parse_args(argv)
    res = run(args)
    s, m = res["search"], res["memory"]
    print(
        f"\n{res['plan']['factory']} at {args.n:,} x {args.dim}-d: recall@10 {s['recall_at_10']:.4f}, "
        f"{s['index_qps']:,.0f} q/s vs exact {s['exact_qps']:,.0f} q/s = {s['speedup']:.1f}x; "
        f"index {m['index_file_bytes'] / 2**20:,.0f} MiB on disk, {m['loaded_rss_bytes'] / 2**20:,.0f} MiB loaded, "
        f"RSS +{m['rss_growth_bytes'] / 2**20:,.0f} MiB across the build"
    )
    print(f"target recall@10 >= 0.95 at >= 20x exact q/s: {'MET' if res['target']['met'] else 'NOT MET'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
