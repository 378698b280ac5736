#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, ingest an audio library with the shipped
# default model (models/clapsearch-sfx-v2, torch-free runtime) into a searchable collection
# (SQLite + FAISS under runs/demo-home), search it once from the CLI, then serve the REST API and
# the web page over it at http://127.0.0.1:8000 (Ctrl-C stops it).
#
# LIBRARY defaults to deploy/demo-library: 143 short licence-checked recordings that ship in the
# repository (none used to train the model; credits in deploy/demo-library/CREDITS.md).
#
#   bash scripts/demo.sh                                        # the demo library
#   bash scripts/demo.sh ~/Sounds                               # your own folder of sounds
#   CLAPSEARCH_MODEL=models/my-clap bash scripts/demo.sh [LIBRARY]   # any other model folder
#   PORT=9000 HOST=0.0.0.0 bash scripts/demo.sh                 # where the service listens
#   DEMO_SERVE=0 bash scripts/demo.sh                           # CLI search only, no server
#   DEMO_SETUP=0 bash scripts/demo.sh                           # use .venv as it is (no pip)
#   VERBOSE=1 bash scripts/demo.sh                              # also the libraries' log lines
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DEMO_SETUP:-1}" != "0" ]; then
  # The torch-free runtime only (about 0.55 GB); tests and training add their extras
  # (scripts/setup.sh all). An existing full .venv is kept as it is.
  echo "== installing the torch-free runtime into .venv (first run: a few minutes from PyPI)"
  bash scripts/setup.sh runtime
fi
PY=.venv/bin/python
MODEL=${CLAPSEARCH_MODEL:-models/clapsearch-sfx-v2}
if [ ! -f "$MODEL/manifest.json" ]; then
  echo "no model folder at $MODEL (the default model ships in the repository; rebuild it with" >&2
  echo "bash scripts/build_default_model.sh, or point CLAPSEARCH_MODEL at a model folder)" >&2
  exit 1
fi
LIBRARY=${1:-deploy/demo-library}
if [ ! -d "$LIBRARY" ]; then
  echo "no folder at $LIBRARY (give a folder of audio files: bash scripts/demo.sh ~/Sounds)" >&2
  exit 1
fi
mkdir -p runs
# One collection home per library, so the demo library and your own folder never mix.
if [ "$LIBRARY" = deploy/demo-library ]; then
  HOME_DIR=runs/demo-home
else
  HOME_DIR=runs/demo-home-$(basename "$(cd "$LIBRARY" && pwd)")
fi
V=()
[ "${VERBOSE:-0}" = "0" ] || V=(-v)
echo "== ingesting $LIBRARY with $MODEL (re-running skips unchanged files)"
.venv/bin/indexer ${V[@]+"${V[@]}"} ingest "$LIBRARY" --model "$MODEL" --home "$HOME_DIR" --segments \
  || echo "(some files are failing: listed above, and by .venv/bin/indexer status --errors --home $HOME_DIR)"
.venv/bin/indexer status --home "$HOME_DIR" --model "$MODEL"
# Sound only (--mode audio): the demo's file names were written to say what each sound is, so the
# default hybrid ranking, which also reads names, would flatter the model here.
for query in "dog barking" "rain" "a cat meowing" "glass breaking" "a baby crying"; do
  echo "== $query  (by sound alone)"
  .venv/bin/indexer search "$query" --mode audio --model "$MODEL" --home "$HOME_DIR" --top 3
done
FIRST=$(.venv/bin/indexer search "dog barking" --mode audio --model "$MODEL" --home "$HOME_DIR" --top 1 --json \
        | $PY -c "import json, sys; print(json.load(sys.stdin)['items'][0]['path'])")
echo "== sounds like $FIRST"
.venv/bin/indexer search --audio "$FIRST" --model "$MODEL" --home "$HOME_DIR" --top 4
if [ "${DEMO_SERVE:-1}" = "0" ]; then
  exit 0
fi
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
echo "== serving the search page and API on http://$HOST:$PORT  (API docs: /docs; Ctrl-C stops)"
echo "   try: curl 'http://$HOST:$PORT/v1/search?q=dog%20barking&limit=3'"
# HTTP ingest jobs may read the demo library's folder; nothing else on this machine.
CLAPSEARCH_HOME="$HOME_DIR" CLAPSEARCH_MODEL="$MODEL" \
CLAPSEARCH_ALLOWED_INGEST_ROOTS="${CLAPSEARCH_ALLOWED_INGEST_ROOTS:-$(cd "$LIBRARY" && pwd)}" \
  exec .venv/bin/clapsearch-api serve --host "$HOST" --port "$PORT" \
  --log-level "$([ "${VERBOSE:-0}" = "0" ] && echo info || echo debug)"
