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
- ``trainer:T``: polingo's own SFTTrainer path on the same model.

A fourth field sets that phase's step count (``profile:4096:unsloth:14``).

GC is the gradient checkpointing mode: ``unsloth`` (offloaded to CPU), ``torch``, ``off``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import unsloth  # noqa: F401  (before transformers)
from unsloth import FastLanguageModel

from service.base_models import build_random_model
from training.batching import TokenBudgetBatchSampler
from training.data import load_corpus
from training.train import TrainConfig, build_trainer, load_model, tokenize_pairs


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
        print(table[:6000], flush=True)
    return out


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

    if not (args.model_dir / "config.json").is_file():
        build_random_model(
            args.model_dir, tokenizer_dir=args.tokenizer_dir, weights=True, device="cuda"
        )
    config = TrainConfig(
        data=args.data,
        backend="unsloth",
        rank=16,
        alpha=16,
        load_in_4bit=not args.no_4bit,
        max_length=2048,
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
            results[phase] = progress.summary()
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
                sampler = TokenBudgetBatchSampler(lengths, budget, seed=0)
                batches = [
                    pad_batch([examples[i] for i in b], pad_id) for b in list(sampler)[:steps]
                ]
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
