"""What every generation engine is: the Engine base class, the Sampling of one call and
its Generation results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class Generation(NamedTuple):
    token_ids: list[int]
    finish_reason: str  # "stop" (a stop token) or "length" (the token budget ran out)
    # the model's logprob of each of token_ids (unaltered by temperature); None where
    # the engine gives none
    logprobs: list[float] | None = None


def model_max_len(model_path: Path, limit: int) -> int:
    """``limit`` capped by the model's max_position_embeddings, when its config says."""
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return limit
    config = config.get("text_config", config)
    return min(limit, int(config.get("max_position_embeddings") or limit))


@dataclass(frozen=True)
class Sampling:
    """How one ``Engine.generate`` call decodes its prompts."""

    max_tokens: list[int]  # per prompt
    stop_token_ids: list[int]
    adapter: str | None  # "NAME@VERSION" as added, or None: the base model
    temperature: float = 0.0  # 0: greedy
    seeds: list[int] | None = None  # per prompt, where the engine can
    ignore_stop: bool = False  # each runs to its max_tokens (Settings.exact_length)


class Engine:
    """The engines' base: an engine implements ``add_adapter``, ``remove_adapter``,
    ``pending`` and ``run``; the translator calls ``generate``."""

    kind: str  # as /health reports it: "vllm" or "transformers (fallback)"

    async def add_adapter(self, key: str, path: Path) -> None:
        """Load a LoRA adapter under ``key`` ("NAME@VERSION"); raise if it cannot be served."""
        raise NotImplementedError

    async def remove_adapter(self, key: str) -> None:
        raise NotImplementedError

    def pending(self) -> int:
        """Sequences the engine holds (queued or generating)."""
        raise NotImplementedError

    async def run(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """Continuations of ``prompts`` as ``sampling`` says; cancelling aborts them."""
        raise NotImplementedError

    def dead(self) -> str | None:
        """Why the engine can no longer generate (e.g. its process died), or None."""
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
        ignore_stop: bool = False,
    ) -> list[Generation]:
        """Continuations of ``prompts``, greedy unless ``temperature`` > 0 (then sampled,
        ``seeds`` per prompt where the engine can); cancelling the call aborts them.
        ``ignore_stop``: each runs to its ``max_tokens`` (Settings.exact_length)."""
        sampling = Sampling(max_tokens, stop_token_ids, adapter, temperature, seeds, ignore_stop)
        return await self.run(prompts, sampling)
