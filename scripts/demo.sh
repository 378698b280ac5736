#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, ingest an audio library with the shipped
# default model (models/clapsearch-sfx-v1, torch-free runtime) into a searchable collection
# (SQLite + FAISS under runs/demo-home), then search it by text and by example.
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
HOME_DIR=runs/demo-home
echo "== ingesting $LIBRARY with $MODEL (re-running skips unchanged files)"
.venv/bin/indexer ingest "$LIBRARY" --model "$MODEL" --home "$HOME_DIR" --segments \
  || echo "(some files failed; listed above and by: indexer status --errors --home $HOME_DIR)"
.venv/bin/indexer status --home "$HOME_DIR" --model "$MODEL"
for query in "dog barking in the rain" "footsteps on gravel" "a bird singing" "a door creaking" \
             "water splashing"; do
  echo "== $query"
  .venv/bin/indexer search "$query" --model "$MODEL" --home "$HOME_DIR" --top 3
done
FIRST=$(.venv/bin/indexer search "a door creaking" --model "$MODEL" --home "$HOME_DIR" --top 1 --json \
        | $PY -c "import json, sys; print(json.load(sys.stdin)[0]['path'])")
echo "== sounds like $FIRST"
.venv/bin/indexer search --audio "$FIRST" --model "$MODEL" --home "$HOME_DIR" --top 4
