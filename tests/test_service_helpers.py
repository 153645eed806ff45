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


def variant_adapter(adapter_dir: Path, out_dir: Path, *, scale: float) -> Path:
    """A copy of a PEFT adapter with its lora_B weights scaled: another adapter, same shapes."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    changed = {k: (v * scale if "lora_B" in k else v).contiguous() for k, v in tensors.items()}
    save_file(changed, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    shutil.copy(adapter_dir / "adapter_config.json", out_dir / "adapter_config.json")
    return out_dir


MEMORY_V1 = [
    {"msgid": "Open", "msgctxt": "menu", "msgstr": "開啟（選單）"},
    {"msgid": "Open", "msgctxt": None, "msgstr": "開啟"},
    {"msgid": "Built-in Functions", "msgctxt": None, "msgstr": "內建函式"},
]
MEMORY_V2 = [{"msgid": "Built-in Functions", "msgctxt": None, "msgstr": "內建函式 v2"}]


def mismatched_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """A copy of a PEFT adapter whose lora_A matrices take half the input width, as an
    adapter made for a narrower model would."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    cut = {
        k: (v[:, : v.shape[1] // 2] if "lora_A" in k else v).contiguous()
        for k, v in tensors.items()
    }
    save_file(cut, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    shutil.copy(adapter_dir / "adapter_config.json", out_dir / "adapter_config.json")
    return out_dir
