"""What every generation engine is: the Engine protocol and its Generation results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Protocol


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
        ...
