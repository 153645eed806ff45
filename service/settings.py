"""Settings of the translation service: one typed object, read from the environment
(``Settings.from_env()``) or built by ``polingo serve`` from its options.

Nothing here builds an engine; the translator reads these values when it opens one.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service import contract

EngineKind = Literal["vllm", "transformers"]
ENGINES: tuple[str, ...] = ("vllm", "transformers")


@dataclass(frozen=True, kw_only=True)
class Settings:
    # --- HTTP ---
    host: str = "127.0.0.1"
    """Interface uvicorn binds (POLINGO_HOST)."""
    port: int = 8000
    """TCP port (POLINGO_PORT)."""
    api_key: str | None = None
    """Key POST /adapters/reload wants in X-API-Key (POLINGO_API_KEY); unset: reload refused."""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted; larger ones get 413 (POLINGO_MAX_BODY_BYTES)."""

    # --- adapters ---
    registry: Path = Path("var/registry")
    """Adapter registry folder (POLINGO_REGISTRY)."""
    adapter: str | None = None
    """Default adapter NAME for requests that name none (POLINGO_ADAPTER); unset: the
    registry's only adapter name (an error if it holds several)."""
    watch_interval_s: float = 0.0
    """Seconds between polls of the registry's CURRENT files; 0 turns watching off and
    only POST /adapters/reload picks up new versions (POLINGO_WATCH_INTERVAL)."""

    # --- model and engine ---
    base_model: str | None = None
    """Base model alias, folder or hub id (POLINGO_BASE_MODEL); unset: the default
    adapter's manifest says. Adapters trained on another base are refused."""
    model_cache_dir: Path | None = None
    """Where base-model aliases are materialised (POLINGO_MODEL_CACHE)."""
    engine: EngineKind = "vllm"
    """'vllm' (AsyncLLM, continuous batching) or 'transformers' (fallback) (POLINGO_ENGINE)."""
    tensor_parallel_size: int = 1
    """GPUs vLLM shards the model over (POLINGO_TENSOR_PARALLEL_SIZE)."""
    gpu_memory_utilization: float = 0.85
    """Share of GPU memory vLLM may take (POLINGO_GPU_MEMORY_UTILIZATION); ignored on CPU,
    where VLLM_CPU_KVCACHE_SPACE (GiB) sizes the cache."""
    max_model_len: int = 4096
    """Prompt + generation token limit (capped by the model's own) (POLINGO_MAX_MODEL_LEN).
    Raising it costs KV-cache memory per sequence."""
    max_lora_rank: int = 64
    """Largest adapter rank vLLM accepts (POLINGO_MAX_LORA_RANK)."""
    max_loras: int = 4
    """Adapters vLLM keeps active in one batch (POLINGO_MAX_LORAS)."""
    max_num_seqs: int = 64
    """Sequences vLLM batches at once (POLINGO_MAX_NUM_SEQS)."""
    dtype: str = "auto"
    """Weights dtype for the engine (POLINGO_DTYPE)."""

    # --- limits ---
    max_batch: int = 64
    """Most items in one POST /translate (POLINGO_MAX_BATCH); the schema caps it at 64."""
    max_queue: int = 256
    """Most items in flight over all requests; beyond it: 503 + Retry-After (POLINGO_MAX_QUEUE)."""
    max_text_chars: int = 8000
    """Longest text of one item (POLINGO_MAX_TEXT_CHARS); the schema caps it at 8000."""
    max_new_tokens_cap: int = 1024
    """Upper bound of contract.max_new_tokens (POLINGO_MAX_NEW_TOKENS)."""
    markup_retries: int = contract.MARKUP_RETRIES
    """Candidates sampled when a greedy translation loses, repeats or invents a markup
    placeholder; the candidate (or greedy translation) that keeps it best is answered;
    0 turns it off (POLINGO_MARKUP_RETRIES)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from POLINGO_* variables; ``overrides`` (not None) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(_ENV_NAMES.get(field.name, f"POLINGO_{field.name.upper()}"))
            if raw is not None and raw != "":
                values[field.name] = _parse(field.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.markup_retries < 0:
            raise ValueError("markup_retries must be 0 or more")
        for name in ("port", "max_batch", "max_queue", "max_text_chars", "max_body_bytes"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive")


_ENV_NAMES = {
    "watch_interval_s": "POLINGO_WATCH_INTERVAL",
    "model_cache_dir": "POLINGO_MODEL_CACHE",
    "max_new_tokens_cap": "POLINGO_MAX_NEW_TOKENS",
}


def _parse(name: str, raw: str) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
    except ValueError:
        raise ValueError(
            f"{_ENV_NAMES.get(name, 'POLINGO_' + name.upper())}={raw!r}: not a number"
        ) from None
    return raw
