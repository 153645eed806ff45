# The CUDA vLLM serving set-up on the H200, from the pieces that
# bench/gpu/vllm_wheelhouse.sh made. In each call that carries a piece (.carry/sN):
#   bash bench/gpu/serve_env.sh stash
# In the call after the last piece (and any later call while the machine is warm):
#   source bench/gpu/serve_env.sh
# It joins and checks the bundle, installs the wheels under /tmp/serve-site, unpacks
# gettext and converts the Gemma GGUF into the polingo cache. The default adapter comes
# with the working tree (the piece-carrying calls leave it out to save room).
if [ "${1:-}" = stash ]; then
  mkdir -p /tmp/bundle-parts && cp .carry/s*/part* /tmp/bundle-parts/
  cp .carry/s*/bundle.sha256 /tmp/bundle-parts/ 2>/dev/null || true
  # debs added after the bundle was made (libunistring2, which Debian's msgfmt needs)
  if ls .carry/u/*.deb >/dev/null 2>&1; then mkdir -p /tmp/extra-debs && cp .carry/u/*.deb /tmp/extra-debs/; fi
  ls /tmp/bundle-parts | tr '\n' ' '; du -sh /tmp/bundle-parts
  exit 0
fi
set -euo pipefail
export PYTHONPATH=/tmp/serve-site:$PWD PYTHONUNBUFFERED=1 POLINGO_CACHE=/tmp/pcache
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# vLLM 0.25's sampler imports flashinfer for top-k/top-p unless told not to; greedy and
# plain sampling need none of it (vllm/v1/sample/ops/topk_topp_sampler.py)
export VLLM_USE_FLASHINFER_SAMPLER=0
# On this machine vLLM's engine core saw 33.9 of 139.8 GiB free at start-up (torch in the
# main process: 139.3), so the default share 0.85 is refused; 0.2 (28 GiB) holds the models
export POLINGO_GPU_MEMORY_UTILIZATION=${POLINGO_GPU_MEMORY_UTILIZATION:-0.2}
export PATH=/tmp/gettext/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/gettext/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
if [ ! -f /tmp/serve-site/.done ]; then
  t0=$(date +%s)
  cat /tmp/bundle-parts/part* > /tmp/bundle.tar
  [ "$(sha256sum /tmp/bundle.tar | cut -d' ' -f1)" = "$(cat /tmp/bundle-parts/bundle.sha256)" ] \
    || { echo "serve_env: bundle checksum mismatch" >&2; exit 1; }
  mkdir -p /tmp/bundle && tar xf /tmp/bundle.tar -C /tmp/bundle && rm /tmp/bundle.tar
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/serve-site /tmp/bundle/wheels/*.whl
  for deb in /tmp/bundle/debs/*.deb /tmp/extra-debs/*.deb; do if [ -f "$deb" ]; then dpkg -x "$deb" /tmp/gettext; fi; done
  python3 bench/gpu/gemma_prepare.py /tmp/bundle/gemma-3-270m-q4_k_m.gguf
  touch /tmp/serve-site/.done
  echo "serve_env: installed in $(( $(date +%s) - t0 )) s" >&2
fi
[ -f core/default_adapter/zh-tw/CURRENT ] \
  || { echo "serve_env: core/default_adapter is not in this call's tree" >&2; exit 1; }
