#!/usr/bin/env bash
# Create .venv with everything: the torch-free runtime, the training/conversion extra and the
# test tools. torch is pinned through constraints.txt so no dependency pulls another build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[train,dev]"
