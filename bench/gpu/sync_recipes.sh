# Issues 41 and 42 on one GPU: the update mode and the document split, all jobs side by side
# (a 270M model leaves the GPU mostly idle), each in its own folder under /tmp/runs:
#   upd      the default recipe (v2 contract, 4 examples, r=32, 3 epochs) on the 2024-07-20
#            snapshot plus the update triples (which end 2024-07-18), update mode on; scored
#            on the 2024-07-20 -> 2024-10-19 update set (polingo eval --updates)
#   scratch  the same recipe without the update mode, scored on the same set
#   v4       polingo retrain of the shipped registry on 2024-10-19 plus the update triples,
#            update mode on; its gate scores it against zh-tw@v3 on both held-out splits
#            (v3 trained on the document split's catalogs: the pair split decides)
#   v4x      the same, with issue 42's recipe: memory examples only from a word overlap of
#            0.2 up, and 2024-07-20's pairs plus the triples as extra training text
#   v1doc    v1's recipe (v1 contract) without the document split, the fair baseline of
#            issue 42, scored on the document split's same subset as the gates'
#   v3doc    the same for v3's recipe (v2 contract, 4 examples): the fair zh-tw@v3 there
#   e4       issue 42: polingo retrain from base with the current version's recipe, 4 epochs
#   lr4      the same, 3 epochs at learning rate 4e-4 (twice the recipe's)
#   e4doc    e4 without the gate (cheaper): train, then the document split alone
#   lr6      issue 42, after zh-tw@v5 (lr4) shipped: the current recipe at learning rate 6e-4
#   r64doc   the current recipe (learning rate 4e-4) at rank 64, alpha 128, without the gate:
#            train, then the document split alone (retrain keeps the current rank)
#   terms    issue 42: the current recipe with the terms `polingo data terms` mines from the
#            training split (about 445 beside the glossary's 118) in the prompts of training
#            and serving (retrain --terms), through the gate
#   mbr      issue 39: the shipped current version on the whole pair split, N = 8 alone at each
#            of $MBR_TEMPERATURES (default 0.2 0.8); each run's own greedy candidates are its
#            baseline (mbr_gain_prose), markup retries off; TRUST_LIMIT=N: the first N pairs
#   trust    issue 39: the shipped current version on the whole pair split, greedy and then the
#            consensus of 8 candidates (markup retries off), each timed (wall_s in its log;
#            the other jobs share the GPU meanwhile, so the time ratio is indicative only;
#            TRUST_LIMIT=N scores the first N pairs only, for the time ratio on little budget)
# Usage (after the carry calls, built by bench/gpu/make_carry.sh: .whl + .carry/d + .carry/g1,
# then .carry/g2 .. g5 (and .carry/w if the first call says matplotlib is missing), each
# `bash bench/gpu/sync_recipes.sh stash`; .carry/u (gettext debs) only for upd and scratch;
# then the tree with core/default_adapter):
#   bash bench/gpu/sync_recipes.sh start [JOB ...]   (default: v4 v4x v1doc v3doc trust)
# (`... pack` packs the best promoted retrain at once, whatever the other jobs are doing)
# then, in the calls that follow: bash bench/gpu/sync_recipes.sh wait SECONDS (returns early
# when every job is done; logs in $OUT/logs.txt, manifests and eval reports in
# $OUT/manifests.json; at the end the promoted retrain (v4 or v4x) with the best prose chrF
# on the document split comes back in 15 MiB pieces: cat vN.tgz.part* | tar xz).
# Session 43 (H100): first carry call 52 s, the four later ones under 1 s each; `start lr6
# r64doc terms v1doc`: all done 980 s after `start` (1,155 s of device time in all).
# Session 42 (H100): first carry call 57 s, the four later ones under 1 s each; `start e4
# lr4 v1doc trust` side by side: all done and packed 1,270 s after `start` (1,362 s of device
# time in all). The shipped registry holds v1, v3, v4 and v5 (89 MB with the tree): for
# `start`, move all but the current version (and any a job names) aside, since the gate
# compares with the current one only.
# Session 41 (H100): first carry call 58 s of wall, later ones 33-44 s (the import check ran
# again in each: fixed), `TRUST_LIMIT=120 ... start trust` + `wait 200` 246 s.
# Session 40 (H100): v4 v4x v1doc v3doc side by side were all done 830 s after `start`;
# 1,100 s of device time from the first carry call to the packed adapter (the later carry
# calls took about 5 s each there). Since zh-tw@v4 ships, the tree with core/default_adapter
# is 67 MB, over a call's 64 MiB: move core/default_adapter/zh-tw/v1 aside for `start`.
# Device time, measured on an H100 in session 39: the first carry call about 120 s of budget
# (start-up included), each later one about 35 s, `start` 80 s; `trust` alone then took
# 330 s. v4 alone should need about 1,100 s in all (an estimate, not measured: training
# about 450 s from session 36's upd job, its gate's four evaluations of 300 pairs about
# 280 s from trust's 124 s for 537); with less budget than that, start nothing.
set -euo pipefail
source bench/gpu/env.sh
source bench/gpu/jobs.sh
# gettext (msgmerge for eval --updates): Debian's packages, unpacked in the first call
if [ ! -d /tmp/gettext ] && ls .carry/u/*.deb >/dev/null 2>&1; then
  for deb in .carry/u/*.deb; do dpkg -x "$deb" /tmp/gettext; done
fi
export PATH=/tmp/gettext/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/gettext/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
runs=/tmp/runs
old=/tmp/data/2024-07-20
new=/tmp/data/2024-10-19
updates=/tmp/data/updates-2021-2024.jsonl
recipe=(--base-model gemma3-270m --no-4bit --max-length 768 --batch-tokens 16384 --rank 32
        --alpha 64 --learning-rate 2e-4 --epochs 3 --logging-steps 25 --save-steps 100000)

start() {  # start [JOB ...]: the named jobs (default: all), on a copy of this tree
  [ -f /tmp/pcache/models/gemma3-270m/config.json ] || python3 bench/gpu/gemma_prepare.py
  local repo=/tmp/repo-$SECONDS jobs=("${@:-v4 v4x v1doc v3doc trust}")
  rm -rf "$repo" && mkdir -p "$runs" && cp -r "$PWD" "$repo"
  export PYTHONPATH=/tmp/site:$repo
  local cli="python3 -m cli.main"
  local eval_updates="$cli eval --updates $old $new --registry reg --engine transformers"
  local limit=${EVAL_LIMIT:-300}
  local eval_documents="$cli eval --registry reg --data $new --split document --limit $limit \
--engine transformers"
  local retrain="$cli retrain --docs $new --registry reg --adapter zh-tw --from base \
--updates $updates --min-changes 0 --eval-limit $limit --engine transformers --epochs 3"
  for name in ${jobs[*]}; do
    case $name in
      upd) job upd "$cli train --data $old --adapter upd --registry reg ${recipe[*]} \
--contract v2-update --updates $updates --promote && $eval_updates --adapter upd" ;;
      scratch) job scratch "$cli train --data $old --adapter scratch --registry reg ${recipe[*]} \
--contract v2 --promote && $eval_updates --adapter scratch --modes keep-old,scratch" ;;
      v4) job v4 "$retrain --contract v2-update" ;;
      v4x) job v4x "$retrain --contract v2-update:min_similarity=0.2 --extra-data $old $updates" ;;
      v1doc) job v1doc "$cli train --data $new --adapter v1doc --registry reg ${recipe[*]} \
--contract v1 --promote && $eval_documents --adapter v1doc" ;;
      v3doc) job v3doc "$cli train --data $new --adapter v3doc --registry reg ${recipe[*]} \
--contract v2 --promote && $eval_documents --adapter v3doc" ;;
      e4) job e4 "$retrain --epochs 4" ;;  # the current version's recipe (v4x), 4 epochs
      lr4) job lr4 "$retrain --learning-rate 4e-4" ;;  # ... at twice the learning rate
      e4doc) job e4doc "$cli train --data $new --adapter e4doc --registry reg ${recipe[*]} --epochs 4 \
--contract v2-update:min_similarity=0.2 --extra-data $old $updates --updates $updates --promote && \
$eval_documents --adapter e4doc" ;;
      lr6) job lr6 "$retrain --learning-rate 6e-4" ;;
      terms) job terms "$cli data terms $new -o mined.jsonl && \
$retrain --terms mined.jsonl" ;;
      r64doc) job r64doc "$cli train --data $new --adapter r64doc --registry reg ${recipe[*]} --rank 64 \
--alpha 128 --learning-rate 4e-4 --contract v2-update:min_similarity=0.2 --extra-data $old $updates \
--updates $updates --promote && $eval_documents --adapter r64doc" ;;
      mbr) local v; v=$(cat core/default_adapter/zh-tw/CURRENT)
        job mbr "for t in ${MBR_TEMPERATURES:-0.2 0.8}; do s=\$SECONDS; POLINGO_MAX_QUEUE=1024 $cli eval \
--adapter zh-tw@$v --registry reg --data $new --split pair ${TRUST_LIMIT:+--limit $TRUST_LIMIT} \
--candidates 8 --consensus-temperature \$t \
--markup-retries 0 --engine transformers && echo temperature=\$t wall_s=\$((SECONDS - s)) && \
cp reg/zh-tw/$v/manifest.json t\$t.json; done" ;;
      trust) local v; v=$(cat core/default_adapter/zh-tw/CURRENT)  # the shipped current version
        job trust "for n in 1 8; do s=\$SECONDS; POLINGO_MAX_QUEUE=1024 $cli eval --adapter zh-tw@$v --registry reg \
--data $new --split pair ${TRUST_LIMIT:+--limit $TRUST_LIMIT} --candidates \$n --markup-retries 0 --engine transformers && \
echo candidates=\$n wall_s=\$((SECONDS - s)) && cp reg/zh-tw/$v/manifest.json n\$n.json; done" ;;
      *) echo "unknown job $name" >&2; exit 2 ;;
    esac
  done
  sleep 20 && tail -n 3 "$runs"/*.log
}

collect() {  # one file of logs, one of manifests and reports: $OUT brings back at most 8 files
  for log in "$runs"/*.log; do
    echo "=== $(basename "$log")"
    grep -v -E "_pytree|Warning:|Loading weights|it/s\]$|bm25s\|DEBUG" "$log" || true
  done >"$OUT/logs.txt"
  nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv,noheader >>"$OUT/logs.txt" || true
  python3 - "$runs" >"$OUT/manifests.json" <<'PY'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
found = {}
for pattern in ("*/reg/*/v*/manifest.json", "*/reg/*/v*/report/*.json", "*/*.json"):
    for path in sorted(runs.glob(pattern)):
        if path.name in ("loss.json", "examples.json") or path.stat().st_size > 2_000_000:
            continue
        try:
            found[str(path.relative_to(runs))] = json.loads(path.read_text())
        except ValueError:
            pass
print(json.dumps(found, indent=1))
PY
}

pack() {  # the promoted retrain with the best document-split prose chrF, if above the shipped
  # version's in its gate, LoRA in fp16 as shipped
  local best reg version shipped
  shipped=$(cat "$(ls -d /tmp/repo-* | head -1)/core/default_adapter/zh-tw/CURRENT")
  best=$(python3 - "$runs" "$shipped" <<'PY'
import json, pathlib, sys
runs, shipped = pathlib.Path(sys.argv[1]), int(sys.argv[2][1:])
scores = {}
for folder in runs.glob("*/reg/zh-tw"):
    # a retrain's own version is the newest; the older ones came with the shipped registry
    newest = max(folder.glob("v*/report"), key=lambda report: int(report.parent.name[1:]))
    if int(newest.parent.name[1:]) <= shipped or not (newest / "gate.json").is_file():
        continue
    decision = json.loads((newest / "gate.json").read_text())
    prose = decision["candidate"]["document_metrics"]["chrf_prose"]
    # promoted (not worse beyond --margin) is not enough to ship: better on unseen pages
    if decision["promoted"] and prose > decision["reference"]["document_metrics"]["chrf_prose"]:
        scores[folder.parents[1].name] = prose
print(max(scores, key=scores.get) if scores else "")
PY
)
  [ -n "$best" ] || { echo "no retrain passed its gate and beat $shipped on the document split" \
    | tee -a "$OUT/logs.txt"; return 0; }
  reg=$runs/$best/reg/zh-tw && version=$(cat "$reg/CURRENT")
  echo "shipping $best ($version)" | tee -a "$OUT/logs.txt"
  python3 bench/gpu/lora_fp16.py "$reg/$version/adapter_model.safetensors"
  tar czf - -C "$runs/$best/reg" --exclude .checkpoints "zh-tw/$version" zh-tw/CURRENT \
    zh-tw/HISTORY.jsonl | split -b 15M -d -a 1 - "$OUT/$version.tgz.part"
}

case ${1:-} in
  stash) stash_piece
    # the first call also checks the imports and msgmerge (once: .carry/d stays on the
    # machine, and the check's imports cost about 20 s a call)
    { [ -d .carry/d ] && [ ! -f /tmp/.imports-checked ]; } || exit 0
    python3 -c "import cli.main, training.train, training.evaluate, training.retrain, \
training.updates, service.translator, service.engines.hf_engine, core.prompt, core.chinese, \
unsloth, trl, bitsandbytes, opencc, hanzidentifier, bm25s, sphinxlint, prometheus_client, polib, \
msgspec, datasets, sacrebleu; print('imports ok')"
    python3 -c "import matplotlib.pyplot" 2>/dev/null && echo "matplotlib: on the box" \
      || echo "matplotlib: missing, carry .carry/w (make_carry.sh) in a call of its own"
    # the marker even without msgmerge (only upd and scratch need it): session 41's later
    # carry calls each repeated the 35 s check because a missing msgmerge skipped it
    touch /tmp/.imports-checked
    msgmerge --version 2>/dev/null | head -1 || echo "msgmerge: missing (carry .carry/u for upd and scratch)" ;;
  start) shift; start "$@" ;;
  wait) wait_jobs "${2:-500}" ;;
  pack) collect; pack ;;  # without waiting for the other jobs
  *) echo "usage: $0 stash | start [JOB ...] | wait SECONDS | pack" >&2; exit 2 ;;
esac
