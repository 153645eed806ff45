"""Randomly initialised models for the tests and the benchmarks: ``build_tiny_model``
(a 2-layer Llama with a real tokenizer: transformers, PEFT and vLLM tests) and
``build_random_model`` (a real model's exact shape: the GPU benchmarks).

Like core/base_models.py, this module needs only the standard library at import
time, so the GPU machine can build models without the CPU-only packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from core import gguf_import
from core.base_models import (
    ALIASES,
    BaseModelError,
    _alias_gguf,
    _is_current,
    _write_marker,
    default_cache_dir,
)

TINY_SHAPE: dict[str, Any] = {
    # head_dim 32: the smallest head size vLLM's CPU attention supports
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}

SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-3b": {
        "vocab_size": 128256,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}


def write_tokenizer(
    out_dir: Path, tokenizer_from: str | Path, cache_dir: Path | None = None
) -> Any:
    """Write the tokenizer files (with chat template) of an alias or a model folder
    into ``out_dir`` and set the stop ids in its generation_config.json. An alias
    that is not converted yet is read from its GGUF without converting the weights."""
    from transformers import AutoTokenizer

    source = os.fspath(tokenizer_from)
    alias = ALIASES.get(source)
    cached = (cache_dir or default_cache_dir()) / source if alias else None
    out_dir.mkdir(parents=True, exist_ok=True)
    if alias is not None and not (cached is not None and _is_current(cached)):
        with tempfile.TemporaryDirectory(dir=out_dir) as work, _alias_gguf(alias, Path(work)) as g:
            tokenizer = gguf_import.build_tokenizer(g, alias.recipe)
        stop_tokens = alias.recipe.stop_tokens
    else:
        folder = cached if cached is not None else _check_tokenizer_folder(Path(source))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        stop_tokens = _stop_tokens_of_folder(folder, tokenizer)
    tokenizer.save_pretrained(out_dir)
    gguf_import.write_generation_config(out_dir, tokenizer, stop_tokens)
    return tokenizer


def _check_tokenizer_folder(path: Path) -> Path:
    if not path.is_dir() or not any(path.glob("tokenizer*.json")):
        raise BaseModelError(
            f"tokenizer source {path} is neither an alias ({', '.join(ALIASES)}) nor a folder "
            "with tokenizer files"
        )
    return path


def _stop_tokens_of_folder(folder: Path, tokenizer: Any) -> tuple[str, ...]:
    ids: Any = tokenizer.eos_token_id
    gen_path = folder / "generation_config.json"
    if gen_path.is_file():
        ids = json.loads(gen_path.read_text(encoding="utf-8")).get("eos_token_id", ids)
    ids = ids if isinstance(ids, list) else [ids]
    return tuple(tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None)


def _build_llama(
    out_dir: Path,
    shape: dict[str, Any],
    *,
    tokenizer: Any,
    seed: int,
    dtype: str,
    weights: bool,
    device: str = "cpu",
    marker: dict[str, Any],
) -> Path:
    """Config (+ random weights) of a Llama model whose ids follow ``tokenizer``;
    generation_config.json is already in ``out_dir`` (write_tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    generation = json.loads((out_dir / "generation_config.json").read_text(encoding="utf-8"))
    shape = {"vocab_size": len(tokenizer), **shape}
    if shape["vocab_size"] < len(tokenizer):
        raise BaseModelError(
            f"tokenizer has {len(tokenizer)} tokens, more than the shape's {shape['vocab_size']}"
        )
    config = LlamaConfig(
        **shape,
        hidden_act="silu",
        bos_token_id=generation.get("bos_token_id"),
        eos_token_id=generation.get("eos_token_id"),
        pad_token_id=generation.get("pad_token_id"),
        dtype=dtype,
    )
    config.architectures = ["LlamaForCausalLM"]
    if weights:
        torch.manual_seed(seed)
        with torch.device(device):  # built in its dtype: a float32 3B model needs 13 GB
            model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        model.save_pretrained(out_dir)
    else:
        config.save_pretrained(out_dir)
    _write_marker(out_dir, seed=seed, weights=weights, **marker)
    return out_dir


def build_tiny_model(
    out_dir: Path,
    *,
    tokenizer_from: str | Path = "smollm2-135m",
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Path:
    """A randomly initialised 2-layer Llama model (float32, a few MB of weights
    besides the embeddings) with the tokenizer and chat template of an alias or a
    model folder: the test model for transformers, PEFT and vLLM."""
    out_dir = Path(out_dir)
    tokenizer = write_tokenizer(out_dir, tokenizer_from, cache_dir)
    return _build_llama(
        out_dir,
        TINY_SHAPE,
        tokenizer=tokenizer,
        seed=seed,
        dtype="float32",
        weights=True,
        marker={"kind": "tiny", "tokenizer_from": os.fspath(tokenizer_from)},
    )


def build_random_model(
    out_dir: Path,
    shape: str = "llama-3.2-3b",
    *,
    tokenizer_from: str | Path = "smollm2-135m",
    tokenizer_dir: Path | None = None,
    weights: bool = False,
    seed: int = 0,
    dtype: str = "bfloat16",
    device: str = "cpu",
) -> Path:
    """A model folder of a real model's exact shape (``SHAPES``), randomly
    initialised: config, tokenizer and generation config, plus safetensors weights
    when ``weights`` (6.4 GB for llama-3.2-3b in bf16; ``device="cuda"`` builds them
    faster). Without weights, load it with ``AutoModelForCausalLM.from_config``.

    ``tokenizer_dir`` (a folder with tokenizer files, e.g. a tiny model's) overrides
    ``tokenizer_from``; it lets a machine without the GGUF packages build the model.
    The config's vocabulary is the shape's; the tokenizer uses its first ids.
    """
    if shape not in SHAPES:
        raise BaseModelError(f"unknown model shape {shape!r}; known: {', '.join(SHAPES)}")
    out_dir = Path(out_dir)
    source = tokenizer_dir if tokenizer_dir is not None else tokenizer_from
    tokenizer = write_tokenizer(out_dir, source)
    return _build_llama(
        out_dir,
        SHAPES[shape],
        tokenizer=tokenizer,
        seed=seed,
        dtype=dtype,
        weights=weights,
        device=device,
        marker={"kind": "random", "shape": shape, "tokenizer_from": os.fspath(source)},
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (tests and benchmarks start servers on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def browser_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) on PATH, or None (the browser test, the README's picture)."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chrome, driver) if chrome and driver else None


def wait_until_ready(url: str, proc: Any, log: Path, timeout_s: float = 300) -> float:
    """Seconds until the service started as ``proc`` (a Popen writing to ``log``)
    answers GET /ready with 200; RuntimeError with the log's end if it exits or the
    time runs out (tests and benchmarks that start `polingo serve`)."""
    import subprocess
    import time

    import httpx

    started = time.perf_counter()
    while True:
        if proc.poll() is not None or time.perf_counter() - started > timeout_s:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"service not ready (exit {proc.returncode}):\n{tail}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
