# Issue 17 on the H200: training recipes and contract ablations of the default adapter,
# all run at once on the one GPU (a 270M model leaves it mostly idle), each job in its
# own folder under /tmp/runs, scored on the whole held-out split (567 pairs) through the
# service's translator (transformers engine):
#   e3, x4e3, lr4e3  polingo retrain --from base, 3 epochs, gate against the shipped v2:
#                    the v2 contract with 2 memory examples; with 4; with 2 at lr 4e-4
#   noterms          v2's recipe (2 epochs) without glossary terms
# Usage (after the carry calls: .whl, .carry/d, .carry/g1..g5, then the tree with
# core/default_adapter): bash bench/gpu/v2_recipes.sh start
# then, in the calls that follow: bash bench/gpu/v2_recipes.sh wait SECONDS (returns early
# when every job is done; copies the logs to $OUT/logs.txt and every version's manifest to
# $OUT/manifests.json; at the end, the promoted retrain with the best prose chrF comes back
# as a registry in 15 MiB pieces: cat best.tgz.part* | tar xz).
set -euo pipefail
source bench/gpu/env.sh
source bench/gpu/jobs.sh
runs=/tmp/runs
repo=/tmp/repo  # start copies the tree here
data=/tmp/data/2024-10-19
recipe=(--base-model gemma3-270m --no-4bit --max-length 768 --batch-tokens 16384 --rank 32
        --alpha 64 --learning-rate 2e-4 --epochs 2 --logging-steps 25 --save-steps 100000)

start() {
  [ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
  rm -rf "$repo" "$runs" && mkdir -p "$runs" && cp -r "$PWD" "$repo"
  export PYTHONPATH=/tmp/site:$repo
  local cli="python3 -m cli.main"
  local retrain="$cli retrain --docs $data --registry reg --adapter zh-tw --from base \
--min-changes 0 --eval-limit 0 --engine transformers --epochs 3"
  # the v2 preset had 2 examples when these ran; it has 4 (x4e3's) since
  job e3 "$retrain --contract v2:examples=2"
  job x4e3 "$retrain --contract v2:examples=4"
  job lr4e3 "$retrain --contract v2:examples=2 --learning-rate 4e-4"
  job noterms "$cli train --data $data --adapter noterms --registry reg ${recipe[*]} \
--contract v2:examples=2,terms=off --promote && $cli eval --adapter noterms --registry reg --data $data \
--engine transformers"
  sleep 20 && tail -n 3 "$runs"/*.log
}

collect() {  # one file of logs, one of manifests: $OUT brings back at most 8 files
  for log in "$runs"/*.log; do
    echo "=== $(basename "$log")"
    grep -v -E "_pytree|Warning:|Loading weights|it/s\]$|bm25s\|DEBUG" "$log" || true
  done >"$OUT/logs.txt"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >>"$OUT/logs.txt" || true
  python3 - "$runs" >"$OUT/manifests.json" <<'PY'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
print(json.dumps({str(m.relative_to(runs)): json.loads(m.read_text())
                  for m in sorted(runs.glob("*/reg/*/v*/manifest.json"))}, indent=1))
PY
}

pack() {  # the promoted retrain with the best prose chrF, LoRA weights in fp16 as shipped
  local best
  best=$(python3 - "$runs" <<'PY'
import json, pathlib, sys
scores = {}
for reg in pathlib.Path(sys.argv[1]).glob("*/reg/zh-tw"):
    current = (reg / "CURRENT").read_text().strip()
    if current != "v2":
        scores[reg] = json.loads((reg / current / "manifest.json").read_text())["metrics"]["chrf_prose"]
print(max(scores, key=scores.get) if scores else "")
PY
)
  [ -n "$best" ] || { echo "no retrain passed its gate"; return 0; }
  echo "best: $best" | tee -a "$OUT/logs.txt"
  local version; version=$(cat "$best/CURRENT")
  python3 "$repo"/bench/gpu/lora_fp16.py "$best/$version/adapter_model.safetensors"
  # $OUT brings back at most 8 files of 16 MiB: the registry comes back in pieces
  tar czf - -C "$(dirname "$best")" --exclude .checkpoints "zh-tw/$version" zh-tw/CURRENT \
    zh-tw/HISTORY.jsonl | split -b 15M -d -a 1 - "$OUT/best.tgz.part"
}

case ${1:-} in
  start) start ;;
  wait) wait_jobs "${2:-500}" ;;
  *) echo "usage: $0 start | wait SECONDS" >&2; exit 2 ;;
esac
