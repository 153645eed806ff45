"""Share of real tokens in the batch cells, free token budget against K fixed shapes
(``--fixed-shapes``), on a corpus tokenised through the prompt contract. CPU only:

    python bench/bucket_efficiency.py --data DOCS --tokenizer-dir TOK --batch-tokens 5120
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from training.batching import TokenBudgetBatchSampler
from training.data import load_corpus
from training.train import TrainConfig, tokenize_pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--batch-tokens", type=int, default=TrainConfig.batch_tokens)
    parser.add_argument("--shapes", default="4,6,8", help="values of K, comma-separated")
    args = parser.parse_args()

    config = TrainConfig(data=args.data)
    train_pairs, _ = load_corpus(args.data).split(config.heldout_percent)
    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer_dir))
    examples, _ = tokenize_pairs(tokenizer, train_pairs, config)
    lengths = [len(e["input_ids"]) for e in examples]
    free = TokenBudgetBatchSampler(lengths, args.batch_tokens)
    print(f"token budget: {len(free)} batches, {free.padding_efficiency():.1%} real")
    for k in map(int, args.shapes.split(",")):
        fixed = TokenBudgetBatchSampler(lengths, args.batch_tokens, fixed_shapes=k)
        shapes = " ".join(f"{rows}x{n}" for n, rows in fixed.shapes.items())
        print(f"{k} shapes: {len(fixed)} batches, {fixed.padding_efficiency():.1%} real ({shapes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
