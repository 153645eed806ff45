# Issue 42 on the GPU: score versions on both held-out splits of 2024-10-19 (pair split,
# document split: whole catalogs, the one the goal and the retrain gate use), all in one
# engine run with the service's settings (CUDA vLLM, markup retries on), and bring back
# each version's manifest, report, failures.json and predictions.
# Usage: eval_docsplit.sh REF... [-- eval options, e.g. --limit 300 --engine transformers]
#   REF: NAME@VERSION of one registry made of core/default_adapter (zh-tw@v1, zh-tw@v3)
#   plus every adapter train_adapter.sh left in /tmp/reg (e.g. v3doc@v1), copied to
#   /tmp/evalreg first, so the repo's copy stays as is.
# The shipped v1 and v3 trained on every catalog (before the split existed): eval flags
# them (catalogs_trained_on); for the fair baselines train their recipes first:
#   bash bench/gpu/train_adapter.sh v1doc --rank 32 --alpha 64 --epochs 3
#   bash bench/gpu/train_adapter.sh v3doc --rank 32 --alpha 64 --epochs 3 --contract v2:examples=4
set -euo pipefail
source bench/gpu/env.sh
refs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do refs+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
rm -rf /tmp/evalreg && cp -r core/default_adapter /tmp/evalreg
if [ -d /tmp/reg ]; then
  for d in /tmp/reg/*/; do [ "$(basename "$d")" = zh-tw ] || cp -r "$d" /tmp/evalreg/; done
fi
python3 -m cli.main eval --registry /tmp/evalreg --data /tmp/data/2024-10-19 \
  --adapter "${refs[@]}" --split both "$@" 2>&1 \
  | grep --line-buffered -v -E "_pytree|Warning:|Loading weights" | tee "$OUT/eval-docsplit.log"
for ref in "${refs[@]}"; do
  folder=/tmp/evalreg/${ref%@*}/${ref#*@} out="$OUT/${ref/@/-}"
  mkdir -p "$out" && cp "$folder/manifest.json" "$out/" && cp "$folder"/report/*.json* "$out/"
  cp "$folder/report/README.md" "$out/report.md"
done
