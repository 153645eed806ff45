"""Shared by the service tests: a registry built the way training writes one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from service.contract import PromptContract
from service.registry import MEMORY, DataSummary, Manifest, Registry

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def add_version(
    registry: Registry,
    name: str,
    adapter_dir: Path,
    *,
    base_model: str,
    memory: list[dict] | None = None,
    promote: bool = True,
    corrupt: bool = False,
) -> str:
    """Copy a PEFT adapter into a new registry version with a manifest and memory.jsonl."""
    with registry.new_version(name) as (version, folder):
        for file in ADAPTER_FILES:
            shutil.copy(adapter_dir / file, folder / file)
        if corrupt:  # same size, garbage bytes: unreadable weights
            weights = folder / "adapter_model.safetensors"
            weights.write_bytes(b"\x00garbage" * (weights.stat().st_size // 8))
        lines = [json.dumps(entry, ensure_ascii=False) for entry in memory or []]
        (folder / MEMORY).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        manifest = Manifest(
            name=name,
            version=version,
            base_model=base_model,
            contract=PromptContract(),
            data=DataSummary(fingerprint="test", source="tests", pairs=len(memory or [])),
            metrics={"chrf": 1.0},
            created_at="2026-12-01T00:00:00Z",
        )
        registry.write_manifest(folder, manifest)
    if promote:
        registry.promote(f"{name}@{version}", reason="test")
    return version
