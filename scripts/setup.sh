#!/usr/bin/env bash
# Create or update .venv. Versions are pinned through constraints.txt (torch among them, so no
# dependency pulls another build).
#
#   bash scripts/setup.sh runtime   # the torch-free runtime only: indexer, service, ONNX Runtime, FAISS
#                                   # (what scripts/demo.sh and the runtime Docker image need; ~0.55 GB)
#   bash scripts/setup.sh [all]     # + the training/conversion extra (torch) and the test tools
#                                   # (what scripts/test.sh and the model build scripts need)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
case "$MODE" in
  runtime) TARGET="." ;;
  all) TARGET=".[train,dev]" ;;
  *) echo "usage: bash scripts/setup.sh [runtime|all]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# -qq: errors only. With -q, pip 24+ passes on the build backend's notices (setuptools'
# "Editable installation ... be careful with folders" box) and every index-location warning,
# which read like failures on a first run; VERBOSE=1 shows them.
QUIET=$([ "${VERBOSE:-0}" = "0" ] && echo -qq || echo -q)
.venv/bin/python -m pip install "$QUIET" --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install "$QUIET" --disable-pip-version-check -c constraints.txt -e "$TARGET"
