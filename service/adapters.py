"""Adapter versions as the service holds them, and the checks a version must pass
before the engine is asked to load it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.memory import TranslationMemory
from core.prompt import PromptBuilder
from core.registry import MEMORY, Manifest
from core.terms import Term, load_terms
from service.errors import AdapterLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# vLLM applies LoRA to linear projections only (attention and MLP).
LINEAR_MODULES = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "qkv_proj", "gate_up_proj", "dense", "fc1", "fc2", "query_key_value",
}  # fmt: skip


@dataclass
class LoadedAdapter:
    name: str
    version: str
    path: Path
    manifest: Manifest
    memory: TranslationMemory
    prompts: PromptBuilder  # the adapter's contract, memory examples and terms
    in_flight: int = 0

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


def check_adapter_files(key: str, path: Path, max_rank: int) -> None:
    """Refuse, with a message saying why, a folder that no engine could serve."""
    config_path = path / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise AdapterLoadError(f"{key}: no {ADAPTER_CONFIG}") from None
    except ValueError as exc:
        raise AdapterLoadError(f"{key}: {ADAPTER_CONFIG} is not JSON ({exc})") from None
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterLoadError(f"{key}: {ADAPTER_CONFIG} has no LoRA rank 'r'")
    if rank > max_rank:
        raise AdapterLoadError(
            f"{key}: LoRA rank {rank} exceeds the service's max_lora_rank {max_rank}"
        )
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    others = sorted(set(targets) - LINEAR_MODULES)
    if others:
        raise AdapterLoadError(
            f"{key}: LoRA on modules the engine cannot adapt: {', '.join(others)}"
        )
    weights = next((path / w for w in ADAPTER_WEIGHTS if (path / w).is_file()), None)
    if weights is None:
        raise AdapterLoadError(f"{key}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                if not list(handle.keys()):
                    raise AdapterLoadError(f"{key}: {weights.name} holds no tensors")
        except AdapterLoadError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise AdapterLoadError(f"{key}: {weights.name} is unreadable ({exc})") from None


def base_weight_shapes(base_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a base model's safetensors weights (headers only)."""
    from safetensors import safe_open

    index = base_path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"] if (base_path / "model.safetensors").is_file() else []
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        with safe_open(str(base_path / shard), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def check_adapter_shapes(key: str, path: Path, base_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse an adapter made for another model shape before an engine sees it
    (a shape mismatch inside the engine can take the whole engine down)."""
    weights = path / ADAPTER_WEIGHTS[0]
    if not base_shapes or not weights.is_file():
        return
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118
            for part, dim in ((".lora_A.weight", 1), (".lora_B.weight", 0)):
                if not name.endswith(part):
                    continue
                module = name[: -len(part)].removeprefix("base_model.model.")
                base = base_shapes.get(module + ".weight")
                if base is None:
                    raise AdapterLoadError(f"{key}: adapts {module}, which the base model lacks")
                shape = tuple(handle.get_slice(name).get_shape())
                if len(shape) != 2 or len(base) != 2 or shape[dim] != base[dim]:
                    raise AdapterLoadError(
                        f"{key}: {name.removeprefix('base_model.model.')} has shape {list(shape)}, "
                        f"the base model's {module} has {list(base)}: made for another model"
                    )


def check_adapter_values(key: str, path: Path) -> None:
    """Refuse weights holding NaN or infinity: such an adapter passes the warm-up (it
    generates, tokens of nothing) and answers every request with an empty string."""
    weights = path / ADAPTER_WEIGHTS[0]
    if not weights.is_file():
        return
    import torch
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118
            tensor = handle.get_tensor(name)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise AdapterLoadError(
                    f"{key}: {name.removeprefix('base_model.model.')} holds {bad} NaN or "
                    "infinite values: the adapter is broken (a diverged training run?)"
                )


def load_memory(key: str, path: Path) -> TranslationMemory:
    try:
        return TranslationMemory.load(path / MEMORY)
    except ValueError as exc:
        raise AdapterLoadError(f"{key}: {exc}".replace(str(path) + "/", "")) from None


def load_adapter_terms(key: str, path: Path) -> list[Term]:
    try:
        return load_terms(path)
    except ValueError as exc:
        raise AdapterLoadError(f"{key}: {exc}".replace(str(path) + "/", "")) from None
