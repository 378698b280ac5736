#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, get a model folder, embed an audio library
# with the torch-free runtime, and rank it against text queries.
#
# Until the project's trained default model ships, the model here has RANDOM WEIGHTS: the ranking
# shows the pipeline working, not meaningful search. Pass your own model folder to get real results:
#   CLAPSEARCH_MODEL=models/my-clap bash scripts/demo.sh [LIBRARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
MODEL=${CLAPSEARCH_MODEL:-models/micro-random}
if [ ! -f "$MODEL/manifest.json" ]; then
  echo "== building a random-weight demo model in $MODEL (no checkpoint needed)"
  .venv/bin/clap-train init-random micro "$MODEL" 2>&1 | grep -vE '^W[0-9]{4}|torch.onnx|WARNING:root' || true
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
  --model "$MODEL" --top 3
