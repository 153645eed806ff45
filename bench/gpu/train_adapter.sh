# Train one variant of the default adapter (Gemma 3 270M) on the full 2024-10-19 corpus
# and pack the version for the repo. Usage: train_adapter.sh NAME [train options]
# Score it afterwards with: eval_adapter.sh /tmp/reg NAME
set -euo pipefail
source bench/gpu/env.sh
name=$1; shift
[ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
python3 -m cli.main train --data /tmp/data/2024-10-19 --base-model gemma3-270m --adapter "$name" \
  --registry /tmp/reg --no-4bit --max-length 768 --batch-tokens 16384 --logging-steps 25 \
  --save-steps 100000 --promote "$@" 2>&1 | grep --line-buffered -v -E "_pytree|Warning:|Loading weights" \
  | tee "$OUT/train-$name.log"
python3 bench/gpu/lora_fp16.py /tmp/reg/"$name"/v*/adapter_model.safetensors
tar czf "$OUT/$name.tgz" -C /tmp/reg --exclude .checkpoints "$name"
