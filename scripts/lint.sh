#!/usr/bin/env bash
# Guardrails, run by scripts/test.sh (and so by CI) before the tests:
#   ruff         lint rules and formatting (pyproject [tool.ruff])
#   mypy         types of the torch-free runtime and the service (pyproject [tool.mypy])
#   lint-imports import contracts: service/training import indexer, never the reverse; serving
#                never imports torch; no circles between a package's modules (pyproject)
#   private names: no module imports another's _private names (scripts/check_private_imports.py)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CODE=(indexer service training bench tests scripts)
echo "guardrails: ruff, mypy, import contracts, private names" >&2
"$BIN/ruff" check --quiet "${CODE[@]}"
"$BIN/ruff" format --check --quiet "${CODE[@]}"
"$BIN/mypy" --no-error-summary
"$BIN/lint-imports" --no-cache >/dev/null || "$BIN/lint-imports" --no-cache
"$BIN/python" scripts/check_private_imports.py
