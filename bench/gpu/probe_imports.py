"""Which of vLLM's requirements does polingo's serving path import? Finds the smallest
set of packages to carry to the GPU machine (bench/gpu/vllm_wheelhouse.sh's DEPS).

    # vLLM 0.25.0's wheel unpacked (pip install --no-deps --target /tmp/v25 vllm-*.whl),
    # run with an interpreter that has the candidates installed (this repo's .venv)
    PYTHONPATH=/tmp/v25:. .venv/bin/python bench/gpu/probe_imports.py --missing missing.txt

Every top-level module named in --missing (the ones the GPU image lacks: every
distribution of the running environment that is not in the image's package list) is
made unimportable, as if absent: imports raise ModuleNotFoundError, and find_spec and
importlib.metadata.version say "not installed", as the libraries' optional-import
checks expect. The service's imports run in a fresh process; the module that stops
them is added to the allowed set, and again, until they succeed. Import time only: what
the engine loads later (the sampler's flashinfer) shows when it runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

# polingo's serving path: the engine module, vLLM's engine core, worker, models, LoRA,
# compilation, attention and sampler, and the service itself
IMPORTS = """
from vllm import AsyncEngineArgs, SamplingParams, TokensPrompt
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.lora.request import LoRARequest
import vllm.v1.engine.core, vllm.v1.worker.gpu_worker, vllm.v1.worker.gpu_model_runner
import vllm.model_executor.models.gemma3, vllm.model_executor.models.llama
import vllm.lora.model_manager, vllm.lora.worker_manager, vllm.lora.punica_wrapper.punica_gpu
import vllm.v1.executor.uniproc_executor, vllm.v1.executor.multiproc_executor
import vllm.compilation.backends, vllm.compilation.cuda_graph
import vllm.v1.attention.backends.flash_attn, vllm.v1.sample.sampler
import vllm.v1.structured_output, vllm.v1.core.sched.scheduler
import vllm.model_executor.model_loader.default_loader
import service.serve, service.app, clients.translate_po, service.engines.vllm_engine
import service.engines.hf_engine, core.gguf_import, service.translator
from service.app import create_app
"""

BLOCKER = r"""
import importlib.abc, importlib.metadata as md, importlib.util as iu, os, sys
blocked = set(os.environ["PROBE_BLOCKED"].split(",")) - set(os.environ["PROBE_ALLOWED"].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"PROBE-BLOCKED {name.split('.')[0]}", name=name)
sys.meta_path.insert(0, Absent())
real_find_spec, real_version = iu.find_spec, md.version
iu.find_spec = lambda name, package=None: (
    None if name.split(".")[0] in blocked else real_find_spec(name, package))
def version(name):
    if name.replace("-", "_") in blocked:
        raise md.PackageNotFoundError(name)
    return real_version(name)
md.version = version
exec(os.environ["PROBE_CODE"])
"""


def probe(blocked: set[str]) -> list[tuple[str, str]]:
    allowed: list[tuple[str, str]] = []
    while True:
        env = dict(
            os.environ,
            PROBE_BLOCKED=",".join(sorted(blocked)),
            PROBE_ALLOWED=",".join(name for name, _ in allowed),
            PROBE_CODE=IMPORTS,
        )
        done = subprocess.run(
            [sys.executable, "-c", BLOCKER], env=env, capture_output=True, text=True
        )
        if done.returncode == 0:
            return allowed
        needed = re.findall(r"PROBE-BLOCKED (\w+)", done.stderr)
        if not needed:
            sys.exit(f"the imports fail for another reason:\n{done.stderr[-3000:]}")
        where = [
            line.strip() for line in done.stderr.splitlines() if line.strip().startswith("File")
        ]
        allowed.append((needed[-1], where[-1] if where else "?"))
        print(f"needs {needed[-1]:<24} {allowed[-1][1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--missing", type=Path, required=True,
        help="file of comma- or line-separated top-level module names the GPU image lacks",
    )  # fmt: skip
    args = parser.parse_args()
    blocked = set(filter(None, re.split(r"[,\s]+", args.missing.read_text())))
    needed = probe(blocked)
    print("needed at import time:", ", ".join(name for name, _ in needed))


if __name__ == "__main__":
    main()
