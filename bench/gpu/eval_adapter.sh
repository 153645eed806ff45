# Score an adapter on the whole held-out split of 2024-10-19 (with the markup retry) and
# bring back its manifest, report and predictions. Usage: eval_adapter.sh REGISTRY NAME
# [eval options]; core/default_adapter is copied first, so the repo's copy stays as is.
set -euo pipefail
source bench/gpu/env.sh
registry=$1 name=$2; shift 2
[ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
if [ "$registry" != /tmp/reg ]; then rm -rf /tmp/evalreg && cp -r "$registry" /tmp/evalreg && registry=/tmp/evalreg; fi
python3 -m cli.main eval --adapter "$name" --data /tmp/data/2024-10-19 --registry "$registry" \
  --engine transformers "$@" 2>&1 | grep --line-buffered -v -E "_pytree|Warning:|Loading weights" | tee "$OUT/eval-$name.log"
version=$(cat "$registry/$name/CURRENT")
cp "$registry/$name/$version/manifest.json" "$OUT/manifest-$name.json"
cp "$registry/$name/$version/report/predictions.jsonl" "$OUT/predictions-$name.jsonl"
cp "$registry/$name/$version/report/README.md" "$OUT/report-$name.md"
