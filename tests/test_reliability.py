"""Issue 40 on the in-process translator (transformers engine, tiny model): the registry's
CURRENT pointer, the watcher, pinned versions, broken weights, and what the app answers
once the engine is dead."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from test_service_helpers import MEMORY_V1, add_version

from core.registry import CURRENT, Registry
from core.settings import Settings
from service.errors import AdapterLoadError
from service.schemas import TranslateItem, TranslateRequest
from service.translator import open_translator

pytestmark = pytest.mark.slow


def _registry(tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path, versions: int) -> Registry:
    """zh v1..vN, v(N-1) current, vN never promoted (what retrain leaves after a failed gate)."""
    registry = Registry(tmp_path / "registry")
    for n in range(1, versions + 1):
        add_version(
            registry,
            "zh",
            tiny_adapter,
            base_model=str(tiny_model_dir),
            memory=MEMORY_V1,
            promote=n < versions,
        )
    return registry


@pytest.mark.parametrize("pointer", [b"v9\n", b"", b"\xff\xfe"], ids=["v9", "empty", "bytes"])
def test_a_broken_current_keeps_the_served_version(
    pointer: bytes, tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    """40.1 and 40.2: a CURRENT naming no version, empty or not text never switches the
    service to the unpromoted newest version: reload names the problem, v2 keeps serving,
    /adapters still answers, and the watcher survives to serve the fixed pointer."""
    registry = _registry(tmp_path, tiny_model_dir, tiny_adapter, versions=3)
    settings = Settings(registry=registry.root, engine="transformers", watch_interval_s=0.05)

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            assert translator.health().adapters == ["zh@v2"]
            (registry.folder("zh") / CURRENT).write_bytes(pointer)
            result = await translator.reload()
            assert result.loaded == ["zh@v2"]
            assert "CURRENT" in result.errors["zh"], result.errors
            await asyncio.sleep(0.3)  # the watcher polls the broken pointer a few times
            assert translator.health().adapters == ["zh@v2"]
            listed = {a.version: a for a in translator.adapters().adapters}
            assert not any(a.current for a in listed.values())
            (registry.folder("zh") / CURRENT).write_bytes(b"v3\n")  # fixed (promoted)
            for _ in range(400):
                if translator.health().adapters == ["zh@v3"]:
                    break
                await asyncio.sleep(0.05)
            assert translator.health().adapters == ["zh@v3"]

    asyncio.run(scenario())


def test_pinned_versions_are_bounded(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    """40.9: versions pinned by requests (NAME@vN) stay loaded up to
    max_resident_adapters, the least recently used going first; the current one stays."""
    registry = _registry(tmp_path, tiny_model_dir, tiny_adapter, versions=6)
    settings = Settings(
        registry=registry.root, engine="transformers", max_resident_adapters=3, max_new_tokens_cap=4
    )

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            for version in ("v1", "v2", "v3", "v4", "v1", "v6"):
                request = TranslateRequest([TranslateItem("Open")], adapter=f"zh@{version}")
                answer = await translator.translate(request)
                assert answer.translations[0].adapter == f"zh@{version}"
                assert len(translator._loaded) <= 3
            # current v5, then the two most recently used: v1 (used again) and v6
            assert sorted(translator._loaded) == ["zh@v1", "zh@v5", "zh@v6"]
            assert translator.health().adapters == ["zh@v5"]

    asyncio.run(scenario())


def test_an_adapter_with_nan_weights_is_refused(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    """40.8: valid safetensors holding NaN pass the warm-up (they generate nothing
    useful); the load check refuses them and the version before keeps serving."""
    import torch
    from safetensors.torch import load_file, save_file

    registry = _registry(tmp_path, tiny_model_dir, tiny_adapter, versions=2)
    weights = registry.path("zh@v2") / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if "lora_B" in k)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(weights), metadata={"format": "pt"})
    registry.promote("zh@v2")
    (registry.folder("zh") / CURRENT).write_bytes(b"v1\n")  # the service starts on v1
    settings = Settings(registry=registry.root, engine="transformers")

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            (registry.folder("zh") / CURRENT).write_bytes(b"v2\n")
            result = await translator.reload()
            assert result.loaded == ["zh@v1"]
            assert "NaN or infinite" in result.errors["zh@v2"], result.errors
            with pytest.raises(AdapterLoadError, match="NaN or infinite"):
                await translator._load("zh", "v2")

    asyncio.run(scenario())


def test_a_dead_engine_is_neither_live_nor_ready(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path, caplog
) -> None:
    """40.B, the answers: once the engine is dead /health and /ready answer 503 (the
    Kubernetes probes restart the pod) and /translate 503 engine_dead, not a 500 each."""
    from litestar.testing import AsyncTestClient

    from service.app import create_app

    registry = _registry(tmp_path, tiny_model_dir, tiny_adapter, versions=2)
    settings = Settings(registry=registry.root, engine="transformers")
    body = {"items": [{"text": "Open the file."}]}

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            await with_client(translator)

    async def with_client(translator) -> None:
        async with AsyncTestClient(create_app(settings, translator)) as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.post("/translate", json=body)).status_code == 200
            translator.engine.dead = lambda: "the engine core process ended"
            for path in ("/health", "/ready"):
                answer = await client.get(path)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["error"]["type"] == "engine_dead"
                assert "process ended" in answer.json()["error"]["message"]
            answer = await client.post("/translate", json=body)
            assert answer.status_code == 503 and answer.json()["error"]["type"] == "engine_dead"

    with caplog.at_level(logging.ERROR, logger="polingo.service"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no 500 traceback
