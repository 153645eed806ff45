"""Generation engines behind the translator: vLLM (the real one) and a
transformers+PEFT fallback. Both take prompt token ids and return generated token
ids; prompts are built by core.prompt only, in the translator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from core.settings import Settings
from service.engines.base import Engine, Generation, model_max_len

__all__ = ["Engine", "Generation", "model_max_len", "open_engine"]


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
