#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, embed an audio library with the shipped
# default model (models/clapsearch-sfx-v1, torch-free runtime) and rank it against text queries.
#
#   bash scripts/demo.sh [LIBRARY]                              # the default model
#   CLAPSEARCH_MODEL=models/my-clap bash scripts/demo.sh [LIBRARY]   # any other model folder
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
MODEL=${CLAPSEARCH_MODEL:-models/clapsearch-sfx-v1}
if [ ! -f "$MODEL/manifest.json" ]; then
  echo "no model folder at $MODEL (the default model ships in the repository; rebuild it with" >&2
  echo "bash scripts/build_default_model.sh, or point CLAPSEARCH_MODEL at a model folder)" >&2
  exit 1
fi
LIBRARY=${1:-}
if [ -z "$LIBRARY" ]; then
  if [ -d ../shared/data/extra-sfx ]; then
    LIBRARY=../shared/data/extra-sfx          # 341 real, licence-checked recordings
  else
    LIBRARY=runs/demo-library
    $PY scripts/make_demo_library.py "$LIBRARY"
  fi
fi
mkdir -p runs
echo "== embedding $LIBRARY with $MODEL"
.venv/bin/indexer embed "$LIBRARY" --model "$MODEL" --out runs/demo.npz || echo "(some files failed; see above)"
echo "== ranking"
.venv/bin/indexer rank runs/demo.npz "dog barking in the rain" "footsteps on gravel" "a bird singing" \
  "a door creaking" "water splashing" --model "$MODEL" --top 3
