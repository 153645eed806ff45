#!/usr/bin/env bash
# The 3B serving benchmark's adapter (issue 18), built on the CPU machine: a randomly
# initialised Llama-3.2-3B (at /tmp/r3b-work/llama-3.2-3b-random, the path the H200
# rebuilds it at, in bf16, from the same seed and tokenizer; float32 here, 12.8 GB,
# which is what polingo train runs on a CPU without native bf16) and a rank-16 LoRA
# adapter trained on it by `polingo train` for 1 step: with random weights what it
# learns does not matter, only its shape. Output: var/r3b/{reg,tokenizer} (ignored), which
# bench/gpu/vllm_wheelhouse.sh packs into the GPU bundle.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=/tmp/r3b-work
model=$work/llama-3.2-3b-random
rm -rf var/r3b && mkdir -p var/r3b/tokenizer
[ -f "$model/model.safetensors" ] || [ -f "$model/model.safetensors.index.json" ] || .venv/bin/python -c "
from pathlib import Path
from testkit import build_random_model
build_random_model(Path('$model'), 'llama-3.2-3b', weights=True, dtype='float32')"
.venv/bin/polingo train --data tests/data/python-docs-zh-tw/2024-10-19 --base-model "$model" \
  --adapter r3b --registry var/r3b/reg --rank 16 --contract v2 --max-length 192 \
  --max-pairs 32 --max-steps 1 --batch-tokens 256
# the CPU run saves float32 LoRA weights; vLLM serves them in bf16 anyway, and bf16 halves
# what the bundle carries to the GPU (97 -> 49 MB)
.venv/bin/python -c "
from safetensors.torch import load_file, save_file
f = 'var/r3b/reg/r3b/v1/adapter_model.safetensors'
save_file({k: v.bfloat16() for k, v in load_file(f).items()}, f, metadata={'format': 'pt'})"
find "$model" -maxdepth 1 -type f ! -name '*.safetensors*' -exec cp {} var/r3b/tokenizer/ \;
du -sh var/r3b
