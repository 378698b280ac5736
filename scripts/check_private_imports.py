"""Fail when a module imports another module's private names (``from a.b import _helper``).

A leading underscore says "only this module relies on it"; importing it elsewhere hides a real
dependency from readers and from refactoring tools. Make the name public, or move it where both
users can own it. ``tests/`` may reach private names of the module they test.

    python scripts/check_private_imports.py [ROOT ...]      # default: indexer service training bench scripts
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("indexer", "service", "training", "bench", "scripts")


def private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import {alias.name}")
    return found


def main(argv: list[str]) -> int:
    roots = argv or list(ROOTS)
    problems = [p for root in roots for f in sorted((REPO / root).rglob("*.py")) for p in private_imports(f)]
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} private names imported across modules", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
