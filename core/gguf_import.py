"""Turn a packaged GGUF checkpoint into a normal Hugging Face model folder.

transformers can read GGUF files (``from_pretrained(dir, gguf_file=...)``, weights
dequantized), but what it makes of them is not fit to serve or fine-tune as is:
it refuses to save the model, SmolLM2's converted tokenizer ends sequences with
``<|im_start|>``, and Gemma 3's converted tokenizer has no merges (it spells words
out character by character) and knows no turn markers. This module fixes each of
those and writes config, safetensors, tokenizer, chat template and generation
config. Heavy imports (torch, transformers, gguf) happen inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ChatML without a default system turn: SmolLM2-Instruct's turn format.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Gemma's turn format; a system message is folded into the first user turn, as
# Gemma has no system role. The GGUF carries no template of its own.
GEMMA_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- set ns = namespace(prefix='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set ns.prefix = message['content'] + '\\n\\n' -%}"
    "{%- else -%}"
    "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
    " + '\\n' + ns.prefix + message['content'] + '<end_of_turn>\\n' -}}"
    "{%- set ns.prefix = '' -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

# SentencePiece token types as GGUF stores them.
_NORMAL, _CONTROL, _USER_DEFINED, _BYTE = 1, 3, 4, 6


@dataclass(frozen=True)
class TokenizerRecipe:
    """How to make a correct tokenizer out of one GGUF file."""

    kind: str  # "chatml-gguf": transformers' conversion, fixed; "gemma-spm": rebuilt here
    chat_template: str
    eos_token: str
    stop_tokens: tuple[str, ...]  # generation ends on any of these
    pad_token: str
    model_max_length: int
    extra_special_tokens: tuple[str, ...] = ()  # listed in all_special_tokens (turn markers)


def load_gguf_model(gguf_path: Path, dtype: str = "bfloat16") -> Any:
    """The dequantized model, made savable: after loading, its weights are dense
    tensors, so the GGUF quantizer marker that blocks ``save_pretrained`` can go."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=getattr(torch, dtype)
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = ""
    return model


def build_tokenizer(gguf_path: Path, recipe: TokenizerRecipe) -> Any:
    """A transformers tokenizer for the GGUF's vocabulary, with chat template and
    special tokens set."""
    if recipe.kind == "gemma-spm":
        tokenizer = _gemma_tokenizer(gguf_path)
    elif recipe.kind == "chatml-gguf":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    else:
        raise ValueError(f"unknown tokenizer recipe {recipe.kind!r}")
    tokenizer.eos_token = recipe.eos_token
    tokenizer.pad_token = recipe.pad_token
    if recipe.extra_special_tokens:
        tokenizer.add_special_tokens({"extra_special_tokens": list(recipe.extra_special_tokens)})
    tokenizer.chat_template = recipe.chat_template
    tokenizer.model_max_length = recipe.model_max_length
    tokenizer.name_or_path = ""
    # transformers' default (True) would strip spaces before punctuation on decode
    tokenizer.clean_up_tokenization_spaces = False
    return tokenizer


def _gemma_tokenizer(gguf_path: Path) -> Any:
    """Gemma 3's SentencePiece BPE, rebuilt from the GGUF's tokens, scores and types.

    SentencePiece BPE merges, at each step, the adjacent pair whose concatenation is
    the highest-scoring piece in the vocabulary. A Hugging Face BPE model does the
    same given, for every normal piece, each split into two normal pieces, ranked by
    the piece's score. Characters outside the vocabulary fall back to <0xNN> bytes.
    Control pieces become special tokens; user-defined pieces (newline and space
    runs, HTML tags) are matched whole before BPE, as SentencePiece does.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import TokenizersBackend

    fields = GGUFReader(str(gguf_path)).fields
    tokens: list[str] = fields["tokenizer.ggml.tokens"].contents()
    scores: list[float] = fields["tokenizer.ggml.scores"].contents()
    types: list[int] = fields["tokenizer.ggml.token_type"].contents()
    special = {
        role: tokens[fields[f"tokenizer.ggml.{role}_token_id"].contents()]
        for role in ("bos", "eos", "unknown", "padding")
    }

    vocab = {token: i for i, token in enumerate(tokens)}
    ranked = []
    for i, (piece, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != _NORMAL or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = vocab.get(piece[:cut]), vocab.get(piece[cut:])
            if left is not None and right is not None and types[left] == types[right] == _NORMAL:
                ranked.append((-scores[i], i, cut))
    ranked.sort()
    merges = [(tokens[i][:cut], tokens[i][cut:]) for _, i, cut in ranked]

    backend = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=special["unknown"],
            byte_fallback=True,
            fuse_unk=True,
            dropout=None,
        )
    )
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    kinds = list(zip(tokens, types, strict=True))
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds if k == _CONTROL]
    )
    backend.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in kinds if k == _USER_DEFINED]
    )
    add_bos = bool(fields["tokenizer.ggml.add_bos_token"].contents())
    return TokenizersBackend(
        tokenizer_object=backend,
        bos_token=special["bos"],
        eos_token=special["eos"],
        unk_token=special["unknown"],
        pad_token=special["padding"],
        add_bos_token=add_bos,
        add_eos_token=False,
    )


def write_generation_config(folder: Path, tokenizer: Any, stop_tokens: tuple[str, ...]) -> None:
    """generation_config.json (and config.json's ids) with every stop token as eos,
    so vLLM and ``generate`` both end a turn where the chat format ends it."""
    from transformers import GenerationConfig

    stop_ids = stop_ids_of(tokenizer, stop_tokens)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(folder)
    config_path = folder / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
            pad_token_id=tokenizer.pad_token_id,
        )
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        config_path.write_text(text, encoding="utf-8")


def stop_ids_of(tokenizer: Any, stop_tokens: tuple[str, ...]) -> list[int]:
    vocab = tokenizer.get_vocab()
    missing = [t for t in stop_tokens if t not in vocab]
    if missing:
        raise ValueError(f"stop tokens {missing} are not in the tokenizer's vocabulary")
    return sorted({vocab[t] for t in stop_tokens})


def convert(gguf_path: Path, recipe: TokenizerRecipe, out_dir: Path) -> None:
    """Write model, tokenizer and generation config of ``gguf_path`` into ``out_dir``."""
    model = load_gguf_model(gguf_path)
    model.save_pretrained(out_dir)
    del model
    tokenizer = build_tokenizer(gguf_path, recipe)
    tokenizer.save_pretrained(out_dir)
    write_generation_config(out_dir, tokenizer, recipe.stop_tokens)
