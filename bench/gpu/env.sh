# Sourced at the start of every device (H200) call: the wheels the GPU box lacks, the
# corpus, and offline settings. Files under /tmp survive while the machine stays warm.
set -euo pipefail
if [ -d .whl ] && [ ! -f /tmp/site/.polingo-installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  touch /tmp/site/.polingo-installed
fi
if [ -d .carry/w ] && [ ! -f /tmp/site/.plot-installed ]; then  # make_carry.sh: matplotlib
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .carry/w/*.whl
  touch /tmp/site/.plot-installed
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 POLINGO_CACHE=/tmp/pcache
export UNSLOTH_DISABLE_STATISTICS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ ! -d /tmp/data/2024-10-19 ] && [ -f .carry/d/data.tgz ]; then
  mkdir -p /tmp/data && tar xzf .carry/d/data.tgz -C /tmp/data
fi
stash_piece() {  # copy a carried piece of the Gemma GGUF to /tmp for a later call
  if ls .carry/g*/part* >/dev/null 2>&1; then mkdir -p /tmp/gguf-parts && cp .carry/g*/part* /tmp/gguf-parts/; fi
  ls -la /tmp/gguf-parts 2>/dev/null || true
}
