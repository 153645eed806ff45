# Issue 17 on the H200: training recipes and contract ablations of the default adapter,
# all run at once on the one GPU (a 270M model leaves it mostly idle), each job in its
# own folder under /tmp/runs, scored on the whole held-out split (567 pairs) through the
# service's translator (transformers engine):
#   retrain-e3     polingo retrain --contract v2 --epochs 3 (gate against the shipped v2)
#   noex, noterms  v2's recipe (2 epochs) without memory examples / without glossary terms
#   v1             the shipped zh-tw@v1 scored on the same split
# Usage (after the carry calls: .whl, .carry/d, .carry/g1..g5, then the tree with
# service/default_adapter): bash bench/gpu/v2_recipes.sh start
# then, in the calls that follow: bash bench/gpu/v2_recipes.sh wait SECONDS (returns early
# when every job is done; copies the logs to $OUT/runs; at the end, the retrained registry in 15 MiB pieces:
# cat retrain-e3.tgz.part* | tar xz).
set -euo pipefail
source bench/gpu/env.sh
runs=/tmp/runs
data=/tmp/data/2024-10-19
recipe=(--base-model gemma3-270m --no-4bit --max-length 768 --batch-tokens 16384 --rank 32
        --alpha 64 --learning-rate 2e-4 --epochs 2 --logging-steps 25 --save-steps 100000)

job() {  # job NAME COMMAND...: run in its own session and folder, log to NAME.log
  local name=$1; shift
  mkdir -p "$runs/$name/reg" && cp -r /tmp/repo/service/default_adapter/zh-tw "$runs/$name/reg/zh-tw"
  (cd "$runs/$name" && setsid nohup bash -c "$* ; echo \"exit status: \$?\"; touch done" \
     >"$runs/$name.log" 2>&1 < /dev/null &)
}

finished() { [ "$(ls "$runs"/*/done 2>/dev/null | wc -l)" -ge "$(ls "$runs"/*.log | wc -l)" ]; }

start() {
  [ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
  rm -rf /tmp/repo "$runs" && mkdir -p "$runs" && cp -r "$PWD" /tmp/repo
  export PYTHONPATH=/tmp/site:/tmp/repo
  local cli="python3 -m training.cli"
  local retrain="$cli retrain --docs $data --registry reg --adapter zh-tw --from base \
--contract v2 --min-changes 0 --eval-limit 0 --engine transformers --epochs 3"
  job retrain-e3 "$retrain"
  for variant in noex:v2:examples=0 noterms:v2:terms=off; do
    local name=${variant%%:*} contract=${variant#*:}
    job "$name" "$cli train --data $data --adapter $name --registry reg ${recipe[*]} \
--contract $contract --promote && $cli eval --adapter $name --registry reg --data $data \
--engine transformers"
  done
  job v1 "$cli eval --adapter zh-tw@v1 --registry reg --data $data --engine transformers"
  sleep 20 && tail -n 3 "$runs"/*.log
}

collect() {
  mkdir -p "$OUT/runs"
  for log in "$runs"/*.log; do
    grep -v -E "_pytree|Warning:|Loading weights|it/s\]$" "$log" > "$OUT/runs/$(basename "$log")" || true
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >"$OUT/runs/gpu.txt"
}

pack() {  # the retrained registry, LoRA weights in fp16 as shipped
  local reg=$runs/retrain-e3/reg
  [ -f "$runs/retrain-e3/done" ] && [ -d "$reg/zh-tw/v3" ] || return 0
  python3 /tmp/repo/bench/gpu/lora_fp16.py "$reg"/zh-tw/v3/adapter_model.safetensors
  # $OUT brings back at most 8 files of 16 MiB: the registry comes back in pieces
  tar czf - -C "$reg" --exclude .checkpoints zh-tw/v3 zh-tw/CURRENT zh-tw/HISTORY.jsonl \
    | split -b 15M -d -a 1 - "$OUT/retrain-e3.tgz.part"
}

case ${1:-} in
  start) start ;;
  wait)
    deadline=$((SECONDS + ${2:-500}))
    while [ $SECONDS -lt $deadline ] && ! finished; do
      sleep 15; collect  # what is under $OUT comes back even if the call is cut off
    done
    collect; tail -n 4 "$runs"/*.log
    if finished; then pack; fi ;;
  *) echo "usage: $0 start | wait SECONDS" >&2; exit 2 ;;
esac
