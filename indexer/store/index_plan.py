"""Which FAISS index suits a collection of ``n`` unit vectors under a memory budget.

The rules follow autofaiss (criteo/autofaiss ``get_optimal_index_keys_v2`` / ``get_optimal_nb_clusters``)
and the FAISS wiki "Guidelines to choose an index", cut down to what a 2-core machine can train:

* below ``exact_below`` vectors: exact inner product (``IndexIDMap2(IndexFlatIP)``). A query then
  scans everything, which is fast enough at that size, and nothing needs training.
* above: an inverted file with ``nlist`` ~ 4 * sqrt(n) lists rounded to a power of two (autofaiss'
  first choice below 1 M vectors), capped so that k-means runs on at most ``TRAIN_POINTS_PER_CENTROID``
  points per centroid taken from the collection and at most 65,536 lists;
* the codes stored per vector: full float32 vectors ("IVF..,Flat") while they are small enough
  (``flat_max_bytes``, default ``FLAT_MAX_BYTES``) and fit the budget; else 4-bit fast-scan product
  quantisation with its best candidates re-scored on 8-bit codes ("IVF..,PQ{dim/2}x4fs,Refine(SQ8)",
  dim/4 + dim bytes) if that fits; else 8-bit scalar quantisation ("SQ8", dim bytes) if that fits,
  else product quantisation with the largest ``m`` dividing ``dim`` (``m`` bytes a vector) that fits.

Why Flat stops at ``FLAT_MAX_BYTES`` even with memory to spare (autofaiss likewise quantises large
collections): the speed target is recall@10 >= 0.95 at >= 20x exact search. Once the lists are
gigabytes a query is bound by the bytes it streams from memory, and on data whose neighbourhoods
straddle many lists (the "hard" synthetic set of bench/index.py) recall 0.95 needs nprobe 64 of
4,096 lists (and IVF-Flat stays at 3-5x exact search at 250k and 500k vectors). Measured on 2-core VMs at 1 M x 512-d (bench/RESULTS.md, issue 18 item 5), hard set:
IVF4096,Flat 6.4-12x exact search, IVF4096,SQ8 (a quarter of the bytes) 12.5x on the AMD VM whose
exact search is fast. Fast scan reads 128 bytes a vector from the lists, scores them with SIMD
table lookups, and re-scores only k * k_factor candidates on their 8-bit codes (``VectorIndex``
does that step itself, because FAISS's IndexRefine cannot remove ids, which incremental
publishing needs); the measured figures are in bench/RESULTS.md.

HNSW is not offered: building it for 1 M 512-d vectors takes tens of minutes on 2 cores and it
cannot remove ids either.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

KINDS = ("flat", "ivf_flat", "ivf_pq4fs_sq8", "ivf_sq8", "ivf_pq")
TRAIN_POINTS_PER_CENTROID = 40  # k-means sample per list (FAISS warns below 39)
MIN_POINTS_PER_CENTROID = 16  # below this a sample is refused (ValueError in VectorIndex.build)
MIN_NLIST = 64  # fewer lists than this: an inverted file has no advantage over exact
MAX_NLIST = 1 << 16
PQ_TRAIN_MIN = 4_096  # sample wanted for the 256 centroids of each PQ sub-quantizer
PQ_MIN_ROWS = 1_024  # fewest rows accepted for them (FAISS needs >= 256)
ID_BYTES = 8  # int64 id per vector in the inverted lists
IDMAP2_BYTES = 48  # IndexIDMap2: id array + reverse hash map entry (approximate)
# Largest float32 payload (n * dim * 4) kept unquantised: 256 MiB is 131,072 vectors at 512-d.
# Measured on the hard set (bench/RESULTS.md, issue 18 item 5), fast scan against IVF-Flat:
# 250k 17.8x vs 4.7x exact search, 500k 20.5x vs 3.0x, 1 M 39x vs 6-12x; on the easy default set
# at 500k 49x vs 25x, at a third of the memory. Below 131k vectors nothing was measured.
FLAT_MAX_BYTES = 256 << 20
SPEED_TARGET = "recall@10 0.95 at 20x exact search"
REFINE = ",Refine(SQ8)"  # the factory suffix of the fast-scan kind: candidates re-scored on 8-bit codes
IDMAP_FLAT_BYTES = 48  # the refine codes' IndexIDMap2: id array + reverse hash map entry (approximate)


@dataclass(frozen=True)
class IndexPlan:
    kind: str
    factory: str
    dim: int
    n_vectors: int
    nlist: int | None
    pq_m: int | None
    train_size: int
    bytes_per_vector: float
    estimated_bytes: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexPlan:
        fields = cls.__dataclass_fields__
        missing = [name for name in fields if name not in d]
        if missing:
            raise ValueError(f"index plan lacks {', '.join(missing)}")
        plan = cls(**{name: d[name] for name in fields})
        if plan.kind not in KINDS:
            raise ValueError(f"unknown index kind {plan.kind!r} (expected one of {', '.join(KINDS)})")
        return plan

    @property
    def base_factory(self) -> str:
        """The FAISS factory string of the searched index (the refine step is ``VectorIndex``'s own)."""
        return self.factory.removesuffix(REFINE)

    @property
    def min_train_size(self) -> int:
        """Fewest sample rows ``VectorIndex.build`` accepts for this plan (0 for flat)."""
        if self.nlist is None:
            return 0
        need = self.nlist * MIN_POINTS_PER_CENTROID
        return max(need, PQ_MIN_ROWS) if self.kind == "ivf_pq" else need


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**27 else f"{n_bytes / 2**20:.1f} MiB"


def _pow2_floor(x: float) -> int:
    return 1 << max(0, math.floor(math.log2(x))) if x >= 1 else 0


def choose_nlist(n_vectors: int) -> int:
    """4 * sqrt(n) to the nearest power of two, capped by the training sample and MAX_NLIST."""
    if n_vectors <= 0:
        return 0
    nlist = 1 << max(0, round(math.log2(4 * math.sqrt(n_vectors))))
    return min(nlist, MAX_NLIST, _pow2_floor(n_vectors / TRAIN_POINTS_PER_CENTROID))


def _flat_plan(n: int, dim: int, budget: int, why: str) -> IndexPlan:
    per = float(dim * 4 + IDMAP2_BYTES)
    est = int(n * per)
    over = f" It needs {_gb(est)}, over the {_gb(budget)} budget." if est > budget else ""
    return IndexPlan("flat", "Flat", dim, n, None, None, 0, per, est, why + over)


def plan_index(
    n_vectors: int,
    dim: int,
    *,
    memory_budget_bytes: int = 4 << 30,
    exact_below: int = 50_000,
    flat_max_bytes: int | None = FLAT_MAX_BYTES,
) -> IndexPlan:
    """Plan the index for ``n_vectors`` L2-normalised ``dim``-d vectors (inner-product metric).

    ``flat_max_bytes``: the largest float32 payload an inverted file keeps unquantised (None: no
    limit but the budget).
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    if flat_max_bytes is not None and flat_max_bytes < 0:
        raise ValueError(f"flat_max_bytes must be >= 0 or None, got {flat_max_bytes}")
    n = max(0, int(n_vectors))
    budget = int(memory_budget_bytes)
    if n == 0:
        return _flat_plan(0, dim, budget, "Exact search: the collection has no vectors yet.")
    if n < exact_below:
        return _flat_plan(
            n,
            dim,
            budget,
            f"Exact search: {n:,} vectors is below the {exact_below:,} where an approximate "
            f"index starts to pay off; every query scans all of them and needs no training.",
        )
    nlist = choose_nlist(n)
    if nlist < MIN_NLIST:
        return _flat_plan(
            n,
            dim,
            budget,
            f"Exact search: {n:,} vectors give only {nlist} inverted lists of "
            f"{TRAIN_POINTS_PER_CENTROID}+ training points, too few to save work over a full scan.",
        )
    train = min(n, nlist * TRAIN_POINTS_PER_CENTROID)
    centroids = nlist * dim * 4
    lists = f"IVF with {nlist:,} lists (4*sqrt(n) rounded to a power of two), trained on {train:,} sampled vectors"
    flat_per = float(dim * 4 + ID_BYTES)
    flat_est = int(n * flat_per) + centroids
    too_big_to_scan = flat_max_bytes is not None and n * dim * 4 > flat_max_bytes
    if flat_est <= budget and not too_big_to_scan:
        why = (
            f"{n:,} vectors: {lists}; a query scans only the nearest lists. Full float32 vectors "
            f"need {_gb(flat_est)}, within the {_gb(budget)} budget, so they are kept unquantised."
        )
        return IndexPlan("ivf_flat", f"IVF{nlist},Flat", dim, n, nlist, None, train, flat_per, flat_est, why)
    sq_per = float(dim + ID_BYTES)
    sq_est = int(n * sq_per) + centroids + 2 * dim * 4
    fs_plan = _fastscan_plan(n, dim, budget, nlist, train, lists, flat_est)
    if fs_plan is not None:
        return fs_plan
    if sq_est <= budget:
        if flat_est <= budget:
            over = (
                f"Full float32 vectors ({_gb(n * dim * 4)}) are over the {_gb(flat_max_bytes or 0)} above which "
                f"scanning them misses the speed target ({SPEED_TARGET}) on data whose neighbours straddle many "
                f"lists (measured at 1 M x 512-d: SQ8 ~1.7x the queries/s of IVF-Flat at recall 0.95)"
            )
        else:
            over = f"Full vectors would need {_gb(flat_est)}, over the {_gb(budget)} budget"
        why = (
            f"{n:,} vectors: {lists}. {over}, so each is stored as {dim} 8-bit values ({_gb(sq_est)}): "
            f"a quarter of the bytes to scan per vector, recall within ~0.005 of full vectors at the same nprobe."
        )
        return IndexPlan("ivf_sq8", f"IVF{nlist},SQ8", dim, n, nlist, None, train, sq_per, sq_est, why)
    return _pq_plan(n, dim, budget, nlist, train, lists, sq_est)


def _fastscan_plan(
    n: int, dim: int, budget: int, nlist: int, train: int, lists: str, flat_est: int
) -> IndexPlan | None:
    """4-bit fast-scan PQ searched first, its top ``k * k_factor`` re-scored on 8-bit codes; None
    when it does not fit the budget (or ``dim`` is odd: the sub-quantizers take 2 dimensions each)."""
    if dim % 2:
        return None
    m = dim // 2
    per = float(m / 2 + ID_BYTES + dim + IDMAP_FLAT_BYTES)
    est = int(n * per) + nlist * dim * 4 + 2 * dim * 4
    if est > budget:
        return None
    if flat_est <= budget:
        over = (
            f"Full float32 vectors ({_gb(n * dim * 4)}) are over the size above which scanning them misses "
            f"the speed target ({SPEED_TARGET}) on data whose neighbours straddle many lists"
        )
    else:
        over = f"Full vectors would need {_gb(flat_est)}, over the {_gb(budget)} budget"
    why = (
        f"{n:,} vectors: {lists}. {over}, so the lists hold {m} 4-bit product-quantisation codes a vector "
        f"({m // 2} bytes), scanned with SIMD lookup tables (fast scan), and the best candidates are re-scored "
        f"on {dim} 8-bit values a vector ({_gb(est)} in all). Measured at 1 M x 512-d on the hard synthetic set: "
        f"recall@10 0.955 at 39x exact search, where 8-bit codes alone made 12.5x (bench/RESULTS.md)."
    )
    factory = f"IVF{nlist},PQ{m}x4fs{REFINE}"
    return IndexPlan("ivf_pq4fs_sq8", factory, dim, n, nlist, m, train, per, est, why)


def _pq_plan(n: int, dim: int, budget: int, nlist: int, train: int, lists: str, sq_est: int) -> IndexPlan:
    """Product quantisation with the largest ``m`` dividing ``dim`` that fits the budget."""
    centroids = nlist * dim * 4
    fixed = centroids + 256 * dim * 4
    divisors = [m for m in range(dim - 1, 0, -1) if dim % m == 0]
    fitting = [m for m in divisors if n * (m + ID_BYTES) + fixed <= budget]
    m = fitting[0] if fitting else divisors[-1] if divisors else 1
    pq_per = float(m + ID_BYTES)
    pq_est = int(n * pq_per) + fixed
    tail = (
        f"each is stored as {m} bytes of product-quantisation codes ({_gb(pq_est)})"
        if fitting
        else f"even {m}-byte product-quantisation codes need {_gb(pq_est)}: the budget cannot be met"
    )
    why = (
        f"{n:,} vectors: {lists}. 8-bit codes would need {_gb(sq_est)}, over the {_gb(budget)} "
        f"budget, so {tail}; expect lower recall than unquantised vectors."
    )
    pq_train = max(train, min(n, PQ_TRAIN_MIN))
    return IndexPlan("ivf_pq", f"IVF{nlist},PQ{m}x8", dim, n, nlist, m, pq_train, pq_per, pq_est, why)
