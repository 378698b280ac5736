"""The command line every generated reference page shares: print it, or ``--check FILE``
(exit 1 with a diff when the committed page is stale)."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path


def main(render: Callable[[], str], script: str, description: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="compare with FILE instead of printing; exit 1 and show a diff if it differs",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check is None:
        sys.stdout.write(text)
        return 0
    current = args.check.read_text() if args.check.is_file() else ""
    if current == text:
        return 0
    sys.stderr.writelines(
        difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(args.check), "generated")
    )
    sys.stderr.write(f"\n{args.check} is stale: python {script} > {args.check}\n")
    return 1
