# The default adapter's next version on the H200, through `polingo retrain`'s gate: the
# shipped zh-tw@v1 is the current version; v2 is trained from the base model with
# contract v2 (memory examples, glossary terms, link labels, post-editing) on the
# 2024-10-19 corpus, with v1's recipe (its manifest's settings); both are scored on the
# whole held-out split through the service's translator (transformers engine, CUDA).
# Brings back the registry folder (zh-tw.tgz), the log and both versions' metrics.
# Usage (after the carry calls of bench/gpu/env.sh): bash bench/gpu/retrain_v2.sh [retrain options]
set -euo pipefail
source bench/gpu/env.sh
[ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
rm -rf /tmp/reg && mkdir -p /tmp/reg && cp -r core/default_adapter/zh-tw /tmp/reg/zh-tw
set +e
python3 -m cli.main retrain --docs /tmp/data/2024-10-19 --registry /tmp/reg --adapter zh-tw \
  --from base --contract v2 --min-changes 0 --eval-limit 0 --engine transformers "$@" 2>&1 \
  | tee "$OUT/retrain-v2.log"
status=${PIPESTATUS[0]}
set -e
echo "retrain exit status: $status"
python3 bench/gpu/lora_fp16.py /tmp/reg/zh-tw/v*/adapter_model.safetensors
tar czf "$OUT/zh-tw.tgz" -C /tmp/reg --exclude .checkpoints zh-tw
