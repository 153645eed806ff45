"""Training speed and memory: polingo's own training path (Unsloth, QLoRA nf4) against
plain transformers + PEFT + bitsandbytes with gradient checkpointing, on the same
token-budget batches of the real corpus, on a randomly initialised model of
Llama-3.2-3B's exact shape. Needs a CUDA GPU.

    python bench/bench_train.py --data DOCS --tokenizer-dir TOK --out results.json

Each variant runs `polingo train` in its own process (Unsloth patches transformers
at import, so the baseline must not share a process with it):

- ``unsloth``: polingo's default, Unsloth on padded rows, each decoder block compiled
  (once per batch shape at first, then with dynamic shapes);
- ``unsloth-cuda-graphs``: Unsloth replaying each block as a CUDA graph, over 8 fixed
  batch shapes (``--cuda-graphs``);
- ``unsloth-packed``: pairs packed into one row of ``--batch-tokens`` tokens, one batch
  shape (``--packing``); ``unsloth-packed-cuda-graphs`` replays that one shape's blocks;
- ``peft``: the baseline, transformers + PEFT + bitsandbytes, gradient checkpointing.

``--steps -1`` runs a whole epoch; ``--merge`` adds this call's variants to those already
in ``--out``, for a comparison that takes more than one device call. Each run inherits
the environment, so Unsloth's switches (``UNSLOTH_BLOCK_COMPILE=0``) go in front of the
command, and ``--train-args`` adds `polingo train` options (``--optim adamw_torch_fused``). Each run
writes its statistics (second-half rate, padding, batches) to ``--stats-file``, which
`polingo train` leaves out of the manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from testkit import build_random_model
from training.config import TrainConfig

VARIANTS = {
    "unsloth": ["--backend", "unsloth"],
    "unsloth-cuda-graphs": ["--backend", "unsloth", "--cuda-graphs"],
    # one shape for every batch (issue 20): pairs packed into one row of --batch-tokens
    "unsloth-packed": ["--backend", "unsloth", "--packing"],
    # the same packing through Unsloth's own fallback on torch 2.11: one SDPA a run of lengths
    "unsloth-packed-segments": ["--backend", "unsloth", "--packing", "--no-flash-varlen"],
    "unsloth-packed-cuda-graphs": ["--backend", "unsloth", "--packing", "--cuda-graphs"],
    "peft": ["--backend", "peft"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--tokenizer-dir", type=Path, required=True, help="a folder with tokenizer files"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/llama-3.2-3b-random"))
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--batch-tokens", type=int, default=TrainConfig.batch_tokens)
    parser.add_argument("--variants", default="unsloth,peft", help=", ".join(VARIANTS))
    parser.add_argument(
        "--train-args",
        default="",
        help="more `polingo train` options for every variant, e.g. '--optim adamw_torch_fused'",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--merge", action="store_true", help="keep the variants already in --out, add these"
    )
    args = parser.parse_args()

    if not (args.model_dir / "config.json").is_file():
        started = time.time()
        build_random_model(
            args.model_dir, tokenizer_dir=args.tokenizer_dir, weights=True, device="cuda"
        )
        print(f"built {args.model_dir} in {time.time() - started:.0f} s", flush=True)
    # --merge: a run split over device calls (one call is too short for three epochs)
    results = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}
    for variant in args.variants.split(","):
        results[variant] = run_variant(variant, args)
        results.update(speedups(results))
        args.out.write_text(json.dumps(results, indent=1))  # what a timed-out call keeps
    print(json.dumps(results, indent=1))
    return 0


def speedups(results: dict) -> dict:
    """Each Unsloth variant's rate over the baseline's, on the second halves (past
    compilation) where both have one."""
    base = results.get("peft", {})
    if not base or "error" in base:
        return {}
    key = "tokens_per_second_second_half"
    out = {}
    for variant, result in results.items():
        if variant in VARIANTS and variant != "peft" and "error" not in result:
            measure = key if result.get(key) and base.get(key) else "tokens_per_second"
            out[variant] = round(result[measure] / base[measure], 2)
            out[f"{variant} (whole run)"] = round(
                result["tokens_per_second"] / base["tokens_per_second"], 2
            )
    return {"speedup_over_peft": out}


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """One `polingo train` process; its statistics, or the error it ended with."""
    stats_file = Path(f"/tmp/bench-stats-{variant}.json")
    stats_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "cli.main", "train", "--data", str(args.data),
        "--base-model", str(args.model_dir), "--adapter", f"bench-{variant}",
        "--registry", "/tmp/bench-registry", *VARIANTS[variant], "--4bit", "--rank", "16",
        "--alpha", "16", "--max-steps", str(args.steps), "--batch-tokens", str(args.batch_tokens),
        "--logging-steps", "5", "--save-steps", "100000", "--stats-file", str(stats_file),
        *shlex.split(args.train_args),
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    started = time.time()
    done = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}"}
    stats = json.loads(stats_file.read_text())
    result = {
        "wall_seconds": round(time.time() - started, 1),
        **stats,
        "max_steps": args.steps,
        "batch_tokens": args.batch_tokens,
    }
    curve = stats.get("losses", [])
    losses = [loss for step, loss in curve if step > 0.75 * curve[-1][0]]
    if losses:  # the curves' ends, to compare variants whose batches differ (packing)
        result["mean_loss_last_quarter"] = round(sum(losses) / len(losses), 4)
    tps = stats.get("tokens_per_second") or 0
    result["epoch_minutes_estimate"] = round(stats["epoch_tokens"] / tps / 60, 1) if tps else None
    print(json.dumps({variant: result}, indent=1), flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
