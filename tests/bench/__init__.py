"""Smoke tests of the benchmarks in bench/: each runs a bench script at its smallest sizes and
checks the results file it writes."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, out: Path, timeout: float) -> dict:
    """``python bench/SCRIPT ARGS`` from the checkout's root (fails on a non-zero exit), then the
    results file ``out`` it wrote."""
    subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=REPO, check=True, capture_output=True, timeout=timeout
    )
    return json.loads(out.read_text())
