"""Generation engines behind the translator: vLLM (the real one) and a
transformers+PEFT fallback. Both take prompt token ids and return generated token
ids; prompts are built by service.contract only, in the translator.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

from service.settings import Settings


class Generation(NamedTuple):
    token_ids: list[int]
    finish_reason: str  # "stop" (a stop token) or "length" (the token budget ran out)


def model_max_len(model_path: Path, limit: int) -> int:
    """``limit`` capped by the model's max_position_embeddings, when its config says."""
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return limit
    config = config.get("text_config", config)
    return min(limit, int(config.get("max_position_embeddings") or limit))


class Engine(Protocol):
    kind: str  # as /health reports it: "vllm" or "transformers (fallback)"

    async def add_adapter(self, key: str, path: Path) -> None:
        """Load a LoRA adapter under ``key`` ("NAME@VERSION"); raise if it cannot be served."""
        ...

    async def remove_adapter(self, key: str) -> None: ...

    def pending(self) -> int:
        """Sequences the engine holds (queued or generating)."""
        ...

    async def generate(
        self,
        prompts: list[list[int]],
        *,
        max_tokens: list[int],
        stop_token_ids: list[int],
        adapter: str | None,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
    ) -> list[Generation]:
        """Continuations of ``prompts``, greedy unless ``temperature`` > 0 (then sampled,
        ``seeds`` per prompt where the engine can); cancelling the call aborts them."""
        ...


@asynccontextmanager
async def open_engine(settings: Settings, model_path: Path) -> AsyncIterator[Engine]:
    """The engine that ``settings.engine`` names, closed on exit."""
    if settings.engine == "vllm":
        from service.engines.vllm_engine import open_vllm_engine

        async with open_vllm_engine(settings, model_path) as engine:
            yield engine
    else:
        from service.engines.hf_engine import open_hf_engine

        async with open_hf_engine(settings, model_path) as engine:
            yield engine
