"""Defaults that the service, the training CLI and translate-po share, stated once."""

from __future__ import annotations

from pathlib import Path

DEFAULT_REGISTRY = Path("var/registry")  # where `polingo train` writes adapters
DEFAULT_ADAPTER = "zh-tw"  # the project's adapter name
ENGINES: tuple[str, ...] = ("vllm", "transformers")


def packaged_registry() -> Path | None:
    """The registry folder shipped in the package with the project's default adapter,
    if this installation has it."""
    folder = Path(__file__).parent / "default_adapter"
    if (folder / DEFAULT_ADAPTER).is_dir():
        return folder
    return None
