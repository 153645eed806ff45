"""Issue 17: retrieval timings over an adapter's memory and prompt lengths (Gemma 3
tokenizer) with k examples and terms, on the training pairs (the memory).

python bench/prompt_lengths.py [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoTokenizer  # noqa: E402

from core.base_models import resolve_base_model  # noqa: E402
from core.memory import TranslationMemory  # noqa: E402
from core.prompt import PromptBuilder, PromptContract  # noqa: E402
from core.retrieval import ExampleIndex  # noqa: E402
from core.terms import read_glossary  # noqa: E402

ADAPTER = Path("core/default_adapter/zh-tw/v1")
GLOSSARY = Path("tests/data/python-docs-zh-tw/2024-10-19/glossary.po")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=2000, help="pairs to tokenize")
    args = parser.parse_args()
    memory = TranslationMemory.load(ADAPTER / "memory.jsonl")
    pairs = memory.pairs()
    t0 = time.perf_counter()
    index = ExampleIndex(pairs)
    t1 = time.perf_counter()
    found = index.search([p[0] for p in pairs], 3, [p[0] for p in pairs])
    t2 = time.perf_counter()
    assert all(e.msgid != p[0] for p, ex in zip(pairs, found, strict=True) for e in ex)
    print(
        f"memory {len(pairs)} pairs, indexed {len(index)}: build {t1 - t0:.2f} s, "
        f"leave-one-out k=3 for all {len(pairs)}: {t2 - t1:.2f} s"
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("gemma3-270m"))
    terms = read_glossary(GLOSSARY)
    step = max(1, len(pairs) // args.limit)
    sample = pairs[::step][: args.limit]
    for k, use_terms in [(0, False), (0, True), (2, False), (3, False), (2, True), (3, True)]:
        contract = PromptContract(version=2, translate_labels=True, examples=k, terms=use_terms)
        builder = PromptBuilder(contract, tokenizer, memory, terms, max_length=768)
        t = time.perf_counter()
        lengths, over, shown = [], 0, 0
        for msgid, msgstr in sample:
            ids, _ = builder.example(msgid, msgstr)
            lengths.append(len(ids))
            over += len(ids) > 768
        dt = time.perf_counter() - t
        for msgid, _ in sample[:300]:
            shown += len(builder.prompt(msgid, exclude=msgid).examples)
        q = statistics.quantiles(lengths, n=20)
        print(
            f"k={k} terms={use_terms}: example tokens mean {statistics.mean(lengths):.0f} "
            f"median {statistics.median(lengths):.0f} p95 {q[18]:.0f} max {max(lengths)}; "
            f"over 768: {over}; total {sum(lengths)} for {len(sample)} pairs; "
            f"examples kept per prompt {shown / 300:.2f}; {dt:.1f} s"
        )


if __name__ == "__main__":
    main()
