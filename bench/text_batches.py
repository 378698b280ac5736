"""Text queries in batches (issue 18 #1): how texts of different lengths share ONNX calls.

    PYTHONPATH=. python bench/text_batches.py [--model models/clapsearch-sfx-v1] [--batch 64] [--rounds 20]

Three ways to run the same batch of natural one-line queries through the SAME text graph of the
model folder, measured in one run, interleaved round by round:
  - exact lengths: one call per distinct token length (what the runtime does);
  - pad to longest: the whole batch padded to its longest text in one call (what a hand-written
    ONNX baseline does; a text's vector then depends on its neighbours);
  - buckets: each text padded to the bucket of its own length (8, 16, 24, ...), one call per
    bucket (tried for issue 18 and measured slower here, so not adopted).
Prints texts/s at ``--batch`` and the single-query p50 (one text, one call) for each, the number
of calls per batch, and the largest difference of any vector to the text run alone, unpadded.
A variant the export measured batch-dependent runs one text per call in the runtime; the bench
still times the three batching strategies on its graph, and says so.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_info, loadavg  # noqa: E402
from bench.service_fixture import SOUNDS  # noqa: E402

PLACES = ["", " in the distance", " close up", " in a large hall", " outside at night", " in the rain", " indoors"]


def queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(SOUNDS) + rng.choice(PLACES) for _ in range(n)]


Plan = list[tuple[list[int], np.ndarray, np.ndarray]]  # (text indices, input_ids, attention_mask) per call


def grouped(rows: list[np.ndarray], width_of, pad_id: int) -> Plan:
    from indexer.text import pad_rows

    groups: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[width_of(len(row))].append(i)
    return [(members, *pad_rows([rows[i] for i in members], w, pad_id)) for w, members in groups.items()]


def exact_lengths(rows: list[np.ndarray], pad_id: int, max_length: int) -> Plan:
    return grouped(rows, lambda n: n, pad_id)


def pad_to_longest(rows: list[np.ndarray], pad_id: int, max_length: int) -> Plan:
    longest = max(len(r) for r in rows)
    return grouped(rows, lambda n: longest, pad_id)


BUCKET_WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def bucket_width(length: int, max_length: int) -> int:
    """The smallest bucket that holds ``length`` tokens, never more than ``max_length``."""
    return min(next((w for w in BUCKET_WIDTHS if w >= length), max_length), max_length)


def buckets(rows: list[np.ndarray], pad_id: int, max_length: int) -> Plan:
    return grouped(rows, lambda n: bucket_width(n, max_length), pad_id)


STRATEGIES = {
    "exact lengths (shipped)": exact_lengths,
    "pad to longest (baseline)": pad_to_longest,
    "buckets (not adopted)": buckets,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "clapsearch-sfx-v1")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results_text_batches.json")
    args = parser.parse_args()

    from indexer.models.encoder import ClapEncoder

    encoder = ClapEncoder.open(args.model, variant=args.variant)
    session, tok = encoder._text, encoder.tokenizer
    texts = queries(args.batch)
    rows = tok.ids(texts)
    alone = np.stack(
        [session.run(None, {"input_ids": r[None], "attention_mask": np.ones_like(r[None])})[0][0] for r in rows]
    )

    def run(plan: Plan) -> np.ndarray:
        out = np.empty((len(rows), encoder.dim), np.float32)
        for members, ids, mask in plan:
            out[members] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    plans = {name: strategy(rows, tok.pad_token_id, tok.max_length) for name, strategy in STRATEGIES.items()}
    for plan in plans.values():
        run(plan)  # warm-up
    batch_s: dict[str, list[float]] = defaultdict(list)
    single_s: dict[str, list[float]] = defaultdict(list)
    names = list(STRATEGIES)
    for r in range(args.rounds):
        lone = [rows[r % len(rows)]]
        for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
            start = time.perf_counter()
            run(plans[name])
            batch_s[name].append(time.perf_counter() - start)
            one = STRATEGIES[name](lone, tok.pad_token_id, tok.max_length)
            start = time.perf_counter()
            session.run(None, {"input_ids": one[0][1], "attention_mask": one[0][2]})
            single_s[name].append(time.perf_counter() - start)

    results = {}
    for name, plan in plans.items():
        results[name] = {
            "texts_per_s": round(args.batch / float(np.median(batch_s[name])), 1),
            "single_p50_ms": round(float(np.median(single_s[name])) * 1000, 3),
            "calls_per_batch": len(plan),
            "max_abs_diff_to_alone_unpadded": float(np.abs(run(plan) - alone).max()),
        }
    invariant = encoder.manifest.variants[encoder.variant].text_batch_invariant
    print(f"model {args.model.name} ({encoder.variant}, text batch-invariant: {invariant}), batch {args.batch},")
    print(f"{args.rounds} rounds, mean {np.mean([len(r) for r in rows]):.1f} tokens, load {loadavg()}")
    base = results["pad to longest (baseline)"]
    print(f"{'':28} {'texts/s':>9} {'x base':>7} {'1 query p50 ms':>15} {'calls':>6} {'max |diff|':>11}")
    for name, row in results.items():
        ratio = row["texts_per_s"] / base["texts_per_s"]
        print(
            f"{name:28} {row['texts_per_s']:9.1f} {ratio:7.2f} {row['single_p50_ms']:15.3f} "
            f"{row['calls_per_batch']:6d} {row['max_abs_diff_to_alone_unpadded']:11.2e}"
        )
    record = {"model": args.model.name, "variant": encoder.variant, "batch": args.batch, "rounds": args.rounds}
    record.update(machine=cpu_info(), load=loadavg(), results=results)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
