"""The transformers+PEFT fallback engine behind the in-process Translator API, on the
tiny model: memory, generation through the contract, reload, refusals, cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_service_helpers import MEMORY_V1, MEMORY_V2, add_version, variant_adapter

from core.registry import Registry
from core.settings import Settings
from service.errors import InvalidRequest, UnknownAdapter
from service.schemas import TranslateItem, TranslateRequest
from service.translator import open_translator

pytestmark = pytest.mark.slow

SOURCE = "Use :func:`len` to count the %s items."


def _request(
    *texts: str, adapter: str | None = None, msgctxt: str | None = None
) -> TranslateRequest:
    return TranslateRequest([TranslateItem(t, msgctxt) for t in texts], adapter=adapter)


def test_fallback_translator(tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path) -> None:
    registry = Registry(tmp_path / "registry")
    base = str(tiny_model_dir)
    add_version(registry, "zh", tiny_adapter, base_model=base, memory=MEMORY_V1)
    other = variant_adapter(tiny_adapter, tmp_path / "other", scale=-3.0)
    add_version(registry, "zh-other", other, base_model=base)
    settings = Settings(registry=registry.root, adapter="zh", engine="transformers", max_batch=8)

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            assert translator.health().engine == "transformers (fallback)"
            assert translator.health().adapters == ["zh-other@v1", "zh@v1"]

            # memory answers exactly, by (msgctxt, msgid) and then msgid alone
            got = await translator.translate(_request("Open", "Open", "Built-in Functions"))
            assert [t.text for t in got.translations] == ["開啟", "開啟", "內建函式"]
            assert all(t.from_memory and t.adapter == "zh@v1" for t in got.translations)
            menu = await translator.translate(_request("Open", msgctxt="menu"))
            assert menu.translations[0].text == "開啟（選單）"

            # the model answers the rest; markup the random model drops is reported
            first = (await translator.translate(_request(SOURCE))).translations[0]
            assert not first.from_memory and first.adapter == "zh@v1"
            assert first.text
            assert (
                any(w.startswith("markup lost") for w in first.warnings)
                or ":func:`len`" in first.text
            )
            again = (await translator.translate(_request(SOURCE, "Open"))).translations
            assert again[0].text == first.text  # greedy: the same answer, batched or not
            assert again[1].from_memory
            # a different adapter changes the output: the LoRA weights are applied
            swapped = await translator.translate(_request(SOURCE, adapter="zh-other"))
            assert swapped.translations[0].adapter == "zh-other@v1"
            assert swapped.translations[0].text != first.text

            # limits, checked for in-process callers too
            with pytest.raises(InvalidRequest) as caught:
                await translator.translate(_request("a", "b", "  "))
            assert caught.value.param == "items[2].text"
            with pytest.raises(InvalidRequest, match="exceeds the limit of 8"):
                await translator.translate(_request(*["x"] * 9))
            with pytest.raises(UnknownAdapter):
                await translator.translate(_request("a", adapter="nope"))

            # a new version is served after reload; the old one stays until then
            add_version(registry, "zh", tiny_adapter, base_model=base, memory=MEMORY_V2)
            before = await translator.translate(_request("Built-in Functions"))
            assert before.translations[0].text == "內建函式"
            result = await translator.reload()
            assert result.loaded == ["zh-other@v1", "zh@v2"] and result.errors == {}
            after = (await translator.translate(_request("Built-in Functions"))).translations[0]
            assert (after.text, after.adapter) == ("內建函式 v2", "zh@v2")
            pinned = (await translator.translate(_request("Open", adapter="zh@v1"))).translations[0]
            assert (pinned.text, pinned.adapter) == ("開啟", "zh@v1")

            # broken versions are refused, with the reason; v2 keeps serving
            add_version(registry, "zh", tiny_adapter, base_model=base, corrupt=True)
            result = await translator.reload()
            assert "zh@v3" in result.errors and "unreadable" in result.errors["zh@v3"]
            add_version(registry, "zh", tiny_adapter, base_model="some-other-base")
            result = await translator.reload()
            assert "trained on base model 'some-other-base'" in result.errors["zh@v4"]
            assert result.loaded == ["zh-other@v1", "zh@v2"]
            still = await translator.translate(_request("Built-in Functions"))
            assert still.translations[0].adapter == "zh@v2"

            # cancelling a translation stops its generation and frees the engine
            job = asyncio.ensure_future(translator.translate(_request(SOURCE * 20)))
            while translator.in_flight == 0:
                await asyncio.sleep(0.01)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            assert translator.in_flight == 0
            after_cancel = (
                await translator.translate(_request(SOURCE, adapter="zh@v2"))
            ).translations
            assert after_cancel[0].text == first.text  # v2 has v1's weights

            listed = {(a.name, a.version): a for a in translator.adapters().adapters}
            # "current" is the registry's pointer; the refused v4 is not loaded, v2 serves
            assert listed[("zh", "v2")].loaded and not listed[("zh", "v2")].current
            assert listed[("zh", "v4")].current and not listed[("zh", "v4")].loaded
            assert listed[("zh", "v4")].base_model == "some-other-base"
            assert not listed[("zh", "v3")].loaded

    asyncio.run(scenario())


def test_registry_watch_serves_a_promoted_version(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir), memory=MEMORY_V1)
    settings = Settings(registry=registry.root, engine="transformers", watch_interval_s=0.1)

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            add_version(
                registry, "zh", tiny_adapter, base_model=str(tiny_model_dir), memory=MEMORY_V2
            )
            for _ in range(600):  # the watcher polls CURRENT every 0.1 s
                if translator.health().adapters == ["zh@v2"]:
                    break
                await asyncio.sleep(0.05)
            got = (await translator.translate(_request("Built-in Functions"))).translations[0]
            assert (got.text, got.adapter) == ("內建函式 v2", "zh@v2")

            # the app over an injected translator: it serves at once, no engine of its own
            from litestar.testing import AsyncTestClient

            from service.app import create_app

            async with AsyncTestClient(create_app(settings, translator)) as client:
                assert (await client.get("/ready")).status_code == 200
                health = (await client.get("/health")).json()
                assert health["engine"] == "transformers (fallback)"
                body = {"items": [{"text": "Built-in Functions"}, {"text": "Open"}]}
                answer = (await client.post("/translate", json=body)).json()["translations"]
                assert answer[0]["text"] == "內建函式 v2" and not answer[1]["from_memory"]
                metrics = (await client.get("/metrics")).text
                assert "polingo_memory_hits_total 2.0" in metrics  # one in-process, one here

    asyncio.run(scenario())
