"""Translated entries per second over HTTP: the vLLM engine against the transformers
fallback, same base model, adapter, entries and machine, in one run.

    python bench/bench_service.py --count 100                      # tiny random model
    python bench/bench_service.py --base-model gemma3-270m --rank 16 --count 100

Each engine gets its own `python -m cli.serve` on 127.0.0.1; the untranslated
entries of a real .po file go to POST /translate in batches from several clients at
once. The adapter is a random-init LoRA (all linear projections): the figures measure
serving speed, not translation quality. Prints a table and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from testkit import free_port

# The test fixture: a trimmed copy of the 2024-10-19 snapshot (--po/--catalog for others).
DATA = Path(__file__).resolve().parents[1] / "tests/data/python-docs-zh-tw/2024-10-19"
DEFAULT_PO = DATA / "library" / "struct.po"  # 101 untranslated entries
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def untranslated(po_path: Path, count: int) -> list[tuple[str, str | None]]:
    import polib

    entries = [e for e in polib.pofile(str(po_path)).untranslated_entries() if not e.obsolete]
    return [(e.msgid, e.msgctxt) for e in entries[:count]]


def build_registry(
    work: Path, base_model: str, rank: int, cache_dir: Path | None
) -> tuple[Path, str]:
    """A registry with one random-init LoRA adapter on the base model; (registry, base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.base_models import resolve_base_model
    from core.prompt import PromptContract
    from core.registry import DataSummary, Manifest, Registry
    from testkit import build_tiny_model

    if base_model == "tiny":
        base_path = build_tiny_model(work / "tiny-model", cache_dir=cache_dir)
        base_name = str(base_path)
    else:
        base_path, base_name = resolve_base_model(base_model, cache_dir=cache_dir), base_model
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=LORA_TARGETS, init_lora_weights=False
    )
    peft = get_peft_model(model, config)
    registry = Registry(work / "registry")
    with registry.new_version("bench") as (version, folder):
        peft.save_pretrained(str(folder))
        (folder / "memory.jsonl").write_text("")  # no memory: every entry goes to the model
        registry.write_manifest(
            folder,
            Manifest(
                name="bench",
                version=version,
                base_model=base_name,
                contract=PromptContract(),
                data=DataSummary(fingerprint="random", source="bench_service.py"),
                notes=f"random-init LoRA r={rank} for benchmarking",
            ),
        )
    registry.promote(f"bench@{version}")
    return registry.root, base_name


def generated_tokens(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('polingo_tokens_total{kind="generated"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_engine(
    engine: str, args: argparse.Namespace, registry: Path, entries: list, log: Path
) -> dict:
    port = free_port()
    cores = len(os.sched_getaffinity(0))
    env = {
        **os.environ,
        "POLINGO_REGISTRY": str(registry),
        "POLINGO_ENGINE": engine,
        "POLINGO_MAX_QUEUE": str(max(256, args.batch * args.clients)),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}"),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
    }
    if args.model_cache:
        env["POLINGO_CACHE"] = str(args.model_cache)
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{engine} server exited; see {log}")
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        startup = time.monotonic() - started
        engine_kind = client.get("/health").json()["engine"]
        client.post("/translate", json={"items": [{"text": "Warm-up text."}]}).raise_for_status()

        batches = [entries[i : i + args.batch] for i in range(0, len(entries), args.batch)]
        pending = list(enumerate(batches))
        lock = threading.Lock()
        failures: list[str] = []

        def worker() -> None:
            with httpx.Client(base_url=client.base_url, timeout=3600) as own:
                while True:
                    with lock:
                        if not pending:
                            return
                        _, batch = pending.pop(0)
                    items = [{"text": msgid, "msgctxt": ctx} for msgid, ctx in batch]
                    answer = own.post("/translate", json={"items": items})
                    if answer.status_code != 200:
                        failures.append(answer.text[:200])

        tokens_before = generated_tokens(client)
        begin = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - begin
        tokens = generated_tokens(client) - tokens_before
        if failures:
            raise RuntimeError(f"{engine}: {len(failures)} failed requests, first: {failures[0]}")
        return {
            "engine": engine_kind,
            "entries": len(entries),
            "seconds": round(elapsed, 2),
            "entries_per_s": round(len(entries) / elapsed, 3),
            "generated_tokens": int(tokens),
            "tokens_per_s": round(tokens / elapsed, 1),
            "startup_s": round(startup, 1),
        }
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--po", type=Path, default=DEFAULT_PO, help=f"catalog (default {DEFAULT_PO})"
    )
    parser.add_argument("--count", type=int, default=100, help="untranslated entries to send")
    parser.add_argument(
        "--base-model", default="tiny", help="'tiny' (random 2-layer Llama) or an alias/folder"
    )
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank of the random adapter")
    parser.add_argument("--batch", type=int, default=8, help="entries per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument(
        "--engines", default="vllm,transformers", help="comma-separated, run in this order"
    )
    parser.add_argument(
        "--model-cache", type=Path, help="polingo cache root (POLINGO_CACHE; models in its models/)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    entries = untranslated(args.po, args.count)
    if not entries:
        print(f"{args.po}: no untranslated entries", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        models = args.model_cache / "models" if args.model_cache else None
        registry, base = build_registry(work, args.base_model, args.rank, models)
        results = []
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, registry, entries, work / f"{engine}.log"))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "po": str(args.po),
        "base_model": args.base_model,
        "lora_rank": args.rank,
        "batch": args.batch,
        "clients": args.clients,
        "cpus": len(os.sched_getaffinity(0)),
        "results": results,
    }
    print(f"\n{args.po.name}: {len(entries)} untranslated entries, base {base}, "
          f"LoRA r={args.rank}, batch {args.batch} x {args.clients} clients")  # fmt: skip
    print(f"{'engine':<26}{'entries/s':>10}{'tokens/s':>10}{'seconds':>9}{'startup s':>11}")
    for r in results:
        print(
            f"{r['engine']:<26}{r['entries_per_s']:>10}{r['tokens_per_s']:>10}{r['seconds']:>9}{r['startup_s']:>11}"
        )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # the vLLM engine spawns processes
    sys.exit(main())
