"""Where a 3B QLoRA training step spends its time: a diagnostic for bench_train.py.

One process, one Unsloth model (Llama-3.2-3B shape, random weights, nf4, r=16), then
a list of phases, each a plain training loop (forward, backward, clip, 8-bit AdamW)
timed after its warm-up steps:

    python bench/gpu/profile_train.py --data DOCS --tokenizer-dir TOK --out DIR \
        --phases ref:4096:unsloth corpus:4096:unsloth corpus:8192:unsloth trainer:4096

- ``ref:T:GC``: random tokens in rows of 2048 (T tokens a step), like the issue's
  reference loop;
- ``corpus:T:GC``: the real corpus's token-budget batches (right-padded rows);
- ``profile:T:GC``: corpus batches under torch.profiler, kernel table to DIR;
- ``syncs:T:GC``: three corpus steps under torch's sync debug mode: each host-device
  synchronisation, counted by the code that made it;
- ``memory:T:GC``: corpus batches, then two steps under torch's allocator history:
  what is live at the step's peak, by allocation site, to DIR/memory-T.json;
- ``trainer:T``: polingo's own SFTTrainer path on the same model.

A fourth field sets that phase's step count (``profile:4096:unsloth:14``).

GC is the gradient checkpointing mode: ``unsloth`` (offloaded to CPU), ``torch``, ``off``.

``PROFILE_TWEAKS`` (comma-separated) tries changes to Unsloth's compiled blocks before
the model loads: ``skip_guards`` (no Dynamo guards on module attributes),
``cpp_wrapper`` (Inductor's C++ launcher instead of its Python one), ``traced_swiglu``
(Unsloth's own traced SwiGLU backward instead of polingo train's in-place one, which was
the tweak ``inplace_swiglu`` in session 5), ``no_cudnn_sdp`` (SDPA without its cuDNN
backend; the plain loops keep torch's choice otherwise).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import unsloth  # noqa: F401  (before transformers)
from unsloth import FastLanguageModel

from testkit import build_random_model
from training.batching import TokenBudgetBatchSampler
from training.config import Experimental, TrainConfig
from training.data import load_corpus
from training.train import build_trainer, load_model, tokenize_pairs


def apply_tweaks(names: list[str]) -> None:
    from unsloth.models import _block_compile

    for name in names:
        if name == "skip_guards":
            _block_compile._COMPILE_OPTIONS["guard_filter_fn"] = (
                torch.compiler.skip_guard_on_all_nn_modules_unsafe
            )
        elif name == "no_cudnn_sdp":
            torch.backends.cuda.enable_cudnn_sdp(False)
        elif name == "cpp_wrapper":
            torch._inductor.config.cpp_wrapper = True
        elif name == "traced_swiglu":
            pass  # read by main(): Experimental(inplace_swiglu=False)
        elif name:
            raise SystemExit(f"unknown PROFILE_TWEAKS entry: {name}")
        print(f"tweak: {name}", flush=True)


def pad_batch(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def set_checkpointing(model, mode: str) -> None:
    FastLanguageModel.for_training(
        model, use_gradient_checkpointing={"unsloth": "unsloth", "torch": True, "off": False}[mode]
    )


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def loop(model, optimizer, batches, warmup: int, profile_dir: Path | None = None) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    real = cells = 0
    started = time.time()
    profiler = None
    for step, batch in enumerate(batches):
        if step == warmup:
            sync()
            started, real, cells = time.time(), 0, 0
            if profile_dir is not None:
                profiler = torch.profiler.profile(
                    activities=[
                        torch.profiler.ProfilerActivity.CPU,
                        torch.profiler.ProfilerActivity.CUDA,
                    ]
                )
                profiler.__enter__()
        gpu = {k: v.to(model.device, non_blocking=True) for k, v in batch.items()}
        loss = model(**gpu).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        real += int(batch["attention_mask"].sum())
        cells += batch["input_ids"].numel()
    sync()
    seconds = time.time() - started
    out = {
        "steps_timed": len(batches) - warmup,
        "real_tokens_per_step": round(real / max(len(batches) - warmup, 1)),
        "real_tok_s": round(real / seconds),
        "cell_tok_s": round(cells / seconds),
        "seconds_per_step": round(seconds / max(len(batches) - warmup, 1), 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
        "final_loss": round(float(loss), 4),
    }
    if profiler is not None:
        profiler.__exit__(None, None, None)
        events = profiler.key_averages()
        table = events.table(sort_by="self_cuda_time_total", row_limit=40)
        kernel_us = sum(e.self_device_time_total for e in events)
        out["gpu_busy_share"] = round(kernel_us / 1e6 / seconds, 3)
        (profile_dir / "profile_table.txt").write_text(table)
        cpu_table = events.table(sort_by="self_cpu_time_total", row_limit=25)
        (profile_dir / "profile_cpu_table.txt").write_text(cpu_table)
        trace = profile_dir / "trace.json"
        profiler.export_chrome_trace(str(trace))
        out["gaps"] = gpu_gaps(json.loads(trace.read_text()), steps=len(batches) - warmup)
        trace.unlink()
        print(table[:6000], flush=True)
    return out


def gpu_gaps(trace: dict, steps: int, top: int = 30) -> dict:
    """Where the GPU sits idle: the gaps between kernels, each charged to the CPU ops
    that enclose the launch ending it (the work the GPU was waiting for)."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    gpu = sorted(
        (e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")),
        key=lambda e: e["ts"],
    )
    launches = {
        e["args"].get("correlation"): e
        for e in events
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "args" in e
    }
    ops = sorted((e for e in events if e.get("cat") == "cpu_op"), key=lambda e: e["ts"])
    starts = [e["ts"] for e in ops]

    def enclosing(ts: float, tid: int) -> str:
        names = []
        i = bisect.bisect_right(starts, ts)
        for e in reversed(ops[max(0, i - 400) : i]):
            if e["tid"] == tid and e["ts"] <= ts <= e["ts"] + e["dur"]:
                names.append(e["name"][:60])
        return " > ".join(reversed(names[-3:])) or "?"

    charged: dict[str, float] = {}
    idle = 0.0
    busy_end = gpu[0]["ts"] if gpu else 0.0
    for kernel in gpu:
        gap = kernel["ts"] - busy_end
        if gap > 20:
            idle += gap
            launch = launches.get(kernel.get("args", {}).get("correlation"))
            where = enclosing(launch["ts"], launch["tid"]) if launch else "?"
            charged[where] = charged.get(where, 0.0) + gap
        busy_end = max(busy_end, kernel["ts"] + kernel["dur"])
    runtime: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver"):
            runtime.setdefault(e["name"], []).append(e["dur"])
    span = (busy_end - gpu[0]["ts"]) if gpu else 0.0
    return {
        "span_ms_per_step": round(span / 1e3 / max(steps, 1), 1),
        "idle_ms_per_step": round(idle / 1e3 / max(steps, 1), 1),
        "idle_by_launching_op_ms_per_step": [
            (round(t / 1e3 / max(steps, 1), 2), name)
            for name, t in sorted(charged.items(), key=lambda kv: -kv[1])[:top]
        ],
        "runtime_calls_per_step": [
            (name, round(len(d) / max(steps, 1), 1), round(sum(d) / 1e3 / max(steps, 1), 2))
            for name, d in sorted(runtime.items(), key=lambda kv: -sum(kv[1]))[:12]
        ],
    }


def host_syncs(model, optimizer, batches, warmup: int) -> dict:
    """Count the host-device synchronisations of a few steps by the code that made them."""
    import traceback
    import warnings

    loop(model, optimizer, batches[:warmup], warmup=0)
    sites: dict[str, int] = {}

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        stack = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in stack[-3:][::-1])
        key = f"{str(message)[:50]} @ {where}"
        sites[key] = sites.get(key, 0) + 1

    with warnings.catch_warnings():  # puts showwarning and the filters back on exit
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop(model, optimizer, batches[warmup:], warmup=0)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    steps = max(len(batches) - warmup, 1)
    return {
        "steps": steps,
        "syncs_per_step": round(sum(sites.values()) / steps, 1),
        "sites": sorted(([n / steps, k] for k, n in sites.items()), reverse=True)[:25],
    }


def memory_breakdown(model, optimizer, batches, warmup: int, top: int = 25) -> dict:
    """Run the warm-up, then record two steps and replay the allocator's trace to the
    moment of its peak: the live blocks there, grouped by where they were allocated."""
    loop(model, optimizer, batches[:warmup], warmup=0)
    sync()
    static = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=400_000, stacks="python")
    loop(model, optimizer, batches[warmup : warmup + 2], warmup=0)
    sync()
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    peak = torch.cuda.max_memory_allocated()
    trace = snapshot["device_traces"][torch.cuda.current_device()]

    def replay(stop: int | None) -> tuple[int, int, dict]:
        live, now, best, best_at = {}, 0, 0, 0
        for i, event in enumerate(trace[:stop]):
            if event["action"] == "alloc":
                live[event["addr"]] = event
                now += event["size"]
            elif event["action"] in ("free_requested", "free_completed"):
                gone = live.pop(event["addr"], None)
                now -= gone["size"] if gone else 0
            if now > best:
                best, best_at = now, i + 1
        return best, best_at, live

    _, peak_at, _ = replay(None)
    _, _, live = replay(peak_at)

    def site(frames: list[dict]) -> str:
        own = [f for f in frames if "/torch/" not in f["filename"]] or frames
        where = [f"{Path(f['filename']).name}:{f['line']}:{f['name']}" for f in own[:3]]
        return " < ".join(where) or "?"

    groups: dict[str, list[int]] = {}
    for event in live.values():
        groups.setdefault(site(event.get("frames", [])), []).append(event["size"])
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "static_gib": round(static / 2**30, 3),
        "peak_gib": round(peak / 2**30, 3),
        "live_at_peak_from_step_gib": round(sum(e["size"] for e in live.values()) / 2**30, 3),
        "events": len(trace),
        "cells_per_step": [int(b["input_ids"].numel()) for b in batches[warmup : warmup + 2]],
        "sites": [
            {"mib": round(sum(sizes) / 2**20, 1), "n": len(sizes), "site": name}
            for name, sizes in ranked
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/llama-3.2-3b-random"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--phases", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-4bit", action="store_true", help="16-bit LoRA (CPU smoke runs)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    tweaks = os.environ.get("PROFILE_TWEAKS", "").split(",")
    apply_tweaks(tweaks)
    if not (args.model_dir / "config.json").is_file():
        build_random_model(
            args.model_dir, tokenizer_dir=args.tokenizer_dir, weights=True, device="cuda"
        )
    config = TrainConfig(
        data=args.data,
        rank=16,
        alpha=16,
        load_in_4bit=not args.no_4bit,
        max_length=2048,
        experimental=Experimental(backend="unsloth", inplace_swiglu="traced_swiglu" not in tweaks),
    )
    model, tokenizer = load_model(args.model_dir, config)
    corpus = load_corpus(args.data)
    train_pairs, _ = corpus.split(config.heldout_percent)
    examples, _ = tokenize_pairs(tokenizer, train_pairs, replace(config, max_length=512))
    lengths = [len(e["input_ids"]) for e in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    if torch.cuda.is_available():
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(trainable, lr=2e-5, weight_decay=0.0)  # as the trainer
    else:
        optimizer = torch.optim.AdamW(trainable, lr=2e-5)
    results = {}
    for phase in args.phases:
        kind, budget, *rest = phase.split(":")
        budget = int(budget)
        steps = int(rest[1]) if len(rest) > 1 else args.steps
        print(f"--- {phase}", flush=True)
        started = time.time()
        if kind == "trainer":
            run_config = replace(
                config,
                max_length=512,
                batch_tokens=budget,
                max_steps=steps * 2,
                logging_steps=5,
                save_steps=100000,
            )
            set_checkpointing(model, "unsloth")
            trainer, progress = build_trainer(
                model, tokenizer, examples, run_config, Path(f"/tmp/profile-run-{budget}")
            )
            trainer.train()
            results[phase] = progress.stats()
        else:
            set_checkpointing(model, rest[0] if rest else "unsloth")
            if kind == "ref":
                rng = random.Random(0)
                batches = []
                for _ in range(steps):
                    rows = [
                        [rng.randrange(100, 40000) for _ in range(2048)]
                        for _ in range(budget // 2048)
                    ]
                    batches.append(pad_batch([{"input_ids": r, "labels": r} for r in rows], 0))
            else:
                count = {"syncs": args.warmup + 3, "memory": args.warmup + 2}.get(kind, steps)
                sampler = TokenBudgetBatchSampler(lengths, budget, seed=0)
                batches = [
                    pad_batch([examples[i] for i in b], pad_id) for b in list(sampler)[:count]
                ]
            if kind == "syncs":
                results[phase] = host_syncs(model, optimizer, batches, args.warmup)
            elif kind == "memory":
                results[phase] = memory_breakdown(model, optimizer, batches, args.warmup)
                (args.out / f"memory-{budget}.json").write_text(
                    json.dumps(results[phase], indent=1)
                )
            else:
                results[phase] = loop(
                    model,
                    optimizer,
                    batches,
                    args.warmup,
                    profile_dir=args.out if kind == "profile" else None,
                )
        results[phase]["phase_seconds"] = round(time.time() - started, 1)
        print(json.dumps({phase: results[phase]}), flush=True)
        (args.out / "profile.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
