# Issue 39 on one GPU: the shipped current zh-tw version on the whole held-out split of 2024-10-19 with
# the vLLM engine, greedy (N=1) and consensus of N=8 candidates, markup retry off so that
# MBR is compared with greedy alone; each run timed (wall seconds in $OUT/times.txt).
# The eval's metrics give the calibration (calib_spearman, calib_chrf_d10, calib_top_exact)
# and, for N=8, mbr_gain_prose. Usage (after the carry calls for .whl and .carry/d):
#   bash bench/gpu/trust_eval.sh [N ...]   (default: 1 8)
set -euo pipefail
source bench/gpu/env.sh
export POLINGO_MAX_QUEUE=1024  # room for a batch's 64 x 7 samples at N=8
[ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
[ $# -gt 0 ] || set -- 1 8
version=$(cat core/default_adapter/zh-tw/CURRENT)
for n in "$@"; do
  rm -rf "/tmp/trustreg$n" && cp -r core/default_adapter "/tmp/trustreg$n"
  start=$(date +%s.%N)
  python3 -m cli.main eval --adapter "zh-tw@$version" --data /tmp/data/2024-10-19 \
    --registry "/tmp/trustreg$n" --candidates "$n" --markup-retries 0 2>&1 \
    | grep --line-buffered -v -E "_pytree|Warning:|Loading weights" | tee "$OUT/eval-n$n.log"
  echo "candidates=$n wall_s=$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$OUT/times.txt"
  cp "/tmp/trustreg$n/zh-tw/$version/report/predictions.jsonl" "$OUT/predictions-n$n.jsonl"
done
