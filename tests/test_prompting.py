"""Issue 17: the prompt builder, link labels, memory examples and terms; the version-1
contract (zh-tw@v1's) must produce exactly what it produced before."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest
from transformers import AutoTokenizer

from core import prompt as c
from core.markup import check_translation, kept_count, markup_keys
from core.memory import TranslationMemory
from core.prompt import PromptBuilder, PromptContract, messages
from core.retrieval import ExampleIndex
from core.terms import TermMatcher, glossary_terms, load_terms, write_terms

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "core/default_adapter/zh-tw/v1"
# Digests of the prompts and training tokens that core/contract.py + core/prompting.py
# built for the shipped v1 and v3 contracts before they became core/prompt.py.
PINNED = ROOT / "tests/data/pinned_prompts.json"
V2 = PromptContract(version=2, translate_labels=True, examples=2, terms=True, post_edit=True)

# Real entries of the 2024-10-19 snapshot (faq/design.po, faq/general.po).
REF_SOURCE = (
    "For a fuller explanation, please see the :ref:`floating-point arithmetic "
    "<tut-fp-issues>` chapter in the Python tutorial."
)
REF_TARGET = "要更完全的解釋可以查閱在 Python 教學的\\ :ref:`浮點運算 <tut-fp-issues>`\\ 一章。"
LINK_SOURCE = (
    "The `very first article <https://ir.cwi.nl/pub/18204>`_ about Python was written "
    "in 1991 and is now quite outdated."
)
LINK_TARGET = (
    "`最早討論 Python 的文章 <https://ir.cwi.nl/pub/18204>`_\\ 是在 1991 年寫的，"
    "但現在來看已經過時了。"
)
ROLE_SOURCE = "Use :func:`len` and ``x`` with :ref:`floating-point arithmetic <tut-fp-issues>`."

# What version 1 made of these sources before issue 17 (zh-tw@v1 was trained on this).
V1_PROTECTED = {
    REF_SOURCE: (
        "For a fuller explanation, please see the \u27e61\u27e7 chapter in the Python tutorial."
    ),
    LINK_SOURCE: ("The \u27e61\u27e7 about Python was written in 1991 and is now quite outdated."),
    ROLE_SOURCE: "Use \u27e61\u27e7 and \u27e62\u27e7 with \u27e63\u27e7.",
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):  # noqa: ANN201
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_v1_manifest_decodes_to_the_old_behaviour() -> None:
    manifest = json.loads((V1 / "manifest.json").read_text())
    contract = msgspec.convert(manifest["contract"], PromptContract)
    assert contract == PromptContract(version=1, protect_markup=True)
    assert not contract.uses_v2()


def test_new_switches_need_version_2() -> None:
    with pytest.raises(msgspec.ValidationError, match="version 2"):
        msgspec.convert({"version": 1, "examples": 2}, PromptContract)
    with pytest.raises(ValueError, match="protect_markup"):
        PromptContract(version=2, translate_labels=True, protect_markup=False)


@pytest.mark.parametrize("source", list(V1_PROTECTED))
def test_v1_builder_gives_the_tokens_of_today(tokenizer, source: str) -> None:  # noqa: ANN001
    v1 = PromptContract()
    memory = TranslationMemory()
    memory.add("Use :func:`len`.", "使用 :func:`len`。")
    builder = PromptBuilder(v1, tokenizer, memory, [], max_length=768)
    prepared = builder.prompt(source)
    assert prepared.source == V1_PROTECTED[source]
    assert c.restore(prepared.source, prepared.markup) == source

    # version 1's prompt: the instruction, a blank line, the protected source
    def v1_prompt(protected: str) -> list[int]:
        chat = [{"role": "user", "content": f"{c.INSTRUCTION}\n\n{protected}"}]
        text = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=False, date_string="01 Jan 2025"
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert prepared.prompt_ids == v1_prompt(prepared.source)
    assert prepared.examples == [] and prepared.terms == []
    # training pairs: the prompt (items the target keeps verbatim protected), then the
    # protected target and the end of turn
    target = {REF_SOURCE: REF_TARGET, LINK_SOURCE: LINK_TARGET}.get(source, "用 :func:`len`")
    ids, labels = builder.example(source, target)
    protected_source, protected_target, _ = c.protect(source, target)
    n = len(v1_prompt(protected_source))
    assert ids[:n] == v1_prompt(protected_source) and labels[:n] == [-100] * n
    assert (
        tokenizer.decode(ids[n:])
        == f"{protected_target}<|im_end|>\n"
        == tokenizer.decode(labels[n:])
    )
    raw = prepared.source.replace("For", "要")
    assert builder.finish(raw, prepared) == c.restore(raw, prepared.markup)


# v5 is a retrain of v4's recipe (learning rate 4e-4): the same contract, memory and terms,
# so the same prompts are pinned for both.
SAME_PROMPTS_AS = {"v5": "v4"}


@pytest.mark.parametrize("name", ["v1", "v3", "v4", "v5"])
def test_shipped_contracts_give_the_pinned_prompts(tokenizer, name: str) -> None:  # noqa: ANN001
    """The shipped adapters' prompts and training tokens, with their memory and terms,
    are byte for byte what they were trained and served with."""
    import hashlib

    from core.terms import load_terms

    pinned = json.loads(PINNED.read_text())
    folder = ROOT / "core/default_adapter/zh-tw" / name
    manifest = json.loads((folder / "manifest.json").read_text())
    contract = msgspec.convert(manifest["contract"], PromptContract)
    memory = TranslationMemory.load(folder / "memory.jsonl")
    max_length = manifest["training"]["max_length"]
    builder = PromptBuilder(contract, tokenizer, memory, load_terms(folder), max_length=max_length)

    def digest(value: object) -> str:
        return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]

    for (msgid, msgstr, msgctxt), want in zip(
        pinned["sources"], pinned["cases"][SAME_PROMPTS_AS.get(name, name)], strict=True
    ):
        prepared = builder.prompt(msgid, msgctxt)
        assert digest(prepared.prompt_ids) == want["prompt"], msgid
        assert digest(builder.example(msgid, msgstr, msgctxt)) == want["example"], msgid
        assert builder.finish(prepared.source, prepared) == want["finish"], msgid


def test_labels_are_text_role_and_target_are_protected() -> None:
    protected, _, items, pairs = c.protect_labels(ROLE_SOURCE)
    assert protected == (
        "Use \u27e61\u27e7 and \u27e62\u27e7 with "
        "\u27e63\u27e7floating-point arithmetic\u27e64\u27e7."
    )
    assert items == [":func:`len`", "``x``", ":ref:`", " <tut-fp-issues>`"]
    assert pairs == [(3, 4)]
    src, tgt, items, _ = c.protect_labels(LINK_SOURCE, LINK_TARGET)
    assert src.startswith("The \u27e61\u27e7very first article\u27e62\u27e7 about")
    # the target keeps the human label between the same placeholders
    assert tgt.startswith("\u27e61\u27e7最早討論 Python 的文章\u27e62\u27e7\\ 是在")
    assert c.restore(tgt, items) == LINK_TARGET


def test_a_target_without_the_link_leaves_it_unprotected() -> None:
    src, tgt, items, _ = c.protect_labels(REF_SOURCE, "請見 Python 教學。")
    assert src == REF_SOURCE and tgt == "請見 Python 教學。" and items == []


def test_markup_checks_count_role_and_target_not_the_label() -> None:
    assert kept_count(REF_SOURCE, REF_TARGET) == (1, 1)
    assert check_translation(REF_SOURCE, REF_TARGET) == []
    assert markup_keys(REF_SOURCE) == [":ref:`<tut-fp-issues>`"]
    wrong = REF_TARGET.replace("tut-fp-issues", "tut-fp")
    assert kept_count(REF_SOURCE, wrong) == (0, 1)
    assert "markup lost: :ref:`<tut-fp-issues>`" in check_translation(REF_SOURCE, wrong)
    # a role without a title stays whole
    assert markup_keys(":func:`len`") == [":func:`len`"]


def test_label_placeholders_swapped_or_empty_are_damage(tokenizer) -> None:  # noqa: ANN001
    builder = PromptBuilder(PromptContract(version=2, translate_labels=True), tokenizer)
    prepared = builder.prompt(REF_SOURCE)
    good = "請查閱\u27e61\u27e7浮點運算\u27e62\u27e7一章。"
    swapped = "請查閱\u27e62\u27e7浮點運算\u27e61\u27e7一章。"
    empty = "請查閱\u27e61\u27e7\u27e62\u27e7一章。"
    assert builder.keeps_markup(prepared, good)
    assert not builder.keeps_markup(prepared, swapped)
    assert not builder.keeps_markup(prepared, empty)
    assert builder.best_for_markup(prepared, [swapped, empty, good]) == good
    assert builder.finish(good, prepared) == "請查閱:ref:`浮點運算 <tut-fp-issues>`一章。"
    edited = PromptBuilder(msgspec.structs.replace(builder.contract, post_edit=True), tokenizer)
    assert edited.finish(good, prepared) == "請查閱\\ :ref:`浮點運算 <tut-fp-issues>`\\ 一章。"


def _memory() -> TranslationMemory:
    memory = TranslationMemory()
    for msgid, msgstr in [
        ("Return the length of the list.", "回傳串列的長度。"),
        ("Return the length of a string.", "回傳字串的長度。"),
        ("Open the file for reading.", "開啟檔案以讀取。"),
        ("``None``", "``None``"),  # a copy: never an example
        ("Return the length of the tuple.", "回傳元組的長度。"),
    ]:
        memory.add(msgid, msgstr)
    return memory


def test_examples_leave_the_pair_out_and_are_deterministic() -> None:
    index = ExampleIndex(_memory().pairs())
    assert len(index) == 4
    query = "Return the length of the list."
    found = index.search([query, query], 2, exclude=[None, "Return the length of a string."])
    # BM25 prefers the shorter of two equally matching pairs
    assert [e.msgid for e in found[0]] == [
        "Return the length of the tuple.",
        "Return the length of a string.",
    ]
    assert query not in [e.msgid for row in found for e in row]
    assert [e.msgid for e in found[1]] == [
        "Return the length of the tuple.",
        "Open the file for reading.",
    ]
    assert index.search(["zzz qqq"], 2) == [[]]


def test_v2_prompt_shows_terms_and_examples_and_fits(tokenizer) -> None:  # noqa: ANN001
    terms = glossary_terms([("list", "list（串列）"), ("context manager", "情境管理器")])
    builder = PromptBuilder(V2, tokenizer, _memory(), terms, max_length=768)
    prepared = builder.prompt("Return the length of the LIST.")
    assert [t.target for t in prepared.terms] == ["串列"]
    assert [e.msgid for e in prepared.examples][0].startswith("Return the length of")
    text = messages(prepared.source, None, prepared.examples, prepared.terms)[0]["content"]
    assert "Terms:\n- list: 串列" in text and "Example:\nReturn the length" in text
    assert text.endswith("Translate:\nReturn the length of the LIST.")
    assert prepared == builder.prompt("Return the length of the LIST.")
    ids, labels = builder.example("Return the length of the list.", "回傳串列的長度。")
    assert len(ids) == len(labels) and labels.count(-100) < len(labels)
    # a tight budget drops the examples before the source
    tight = PromptBuilder(V2, tokenizer, _memory(), terms, max_length=len(ids) - 5)
    ids_tight, _ = tight.example("Return the length of the list.", "回傳串列的長度。")
    assert len(ids_tight) < len(ids)


def test_terms_round_trip_and_whole_words(tmp_path: Path) -> None:
    terms = glossary_terms(
        [
            ("function", "function（函式）"),
            ("iterator", "iterator（疊代器）"),
            ("long text here and more", "x"),
        ]
    )
    write_terms(tmp_path, terms)
    assert load_terms(tmp_path) == terms
    matcher = TermMatcher(terms)
    assert [t.source for t in matcher.match("A Function returns an iterators list")] == ["function"]
    (tmp_path / "terms.jsonl").write_text('{"source": 1}\n')
    with pytest.raises(ValueError, match=r"terms.jsonl:1: bad term"):
        load_terms(tmp_path)


def test_retrieval_keeps_jax_off_the_gpu(tmp_path: Path) -> None:
    """bm25s runs a JAX top-k at import when JAX is installed, and JAX on a GPU then takes
    75% of its memory. A stand-in ``jax`` package (JAX is not installed here) records the
    platform it was asked for; retrieval must still rank with numpy."""
    import subprocess
    import sys

    fake = tmp_path / "jax"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(tmp_path / 'platform')!r}).write_text("
        "os.environ.get('JAX_PLATFORMS', '<unset>'))\n"
    )
    (fake / "lax.py").write_text(
        "import numpy as np\n"
        "def top_k(x, k):\n"
        "    i = np.argsort(-np.asarray(x), axis=-1)[..., :k]\n"
        "    return np.take_along_axis(np.asarray(x), i, -1), i\n"
    )
    code = (
        "from core.retrieval import ExampleIndex\n"
        "import bm25s.selection as s\n"
        "assert s.JAX_IS_AVAILABLE, 'the stand-in jax was not imported'\n"
        "index = ExampleIndex([('Open the file.', '開啟檔案。'), ('Close it.', '關閉它。')])\n"
        "print(index.search(['open a file'], 1)[0][0].msgstr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(Path(__file__).parents[1])])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "開啟檔案。"
    assert (tmp_path / "platform").read_text() == "cpu"


def test_batched_prompts_are_the_one_by_one_prompts(tokenizer) -> None:  # noqa: ANN001
    """The service prepares a request's texts in one batch (two tokenizer calls); each
    must be exactly what prompt() builds alone, including those whose examples must be
    dropped to leave room for the translation."""
    from conftest import CORPUS

    from training.data import load_corpus
    from training.train import corpus_terms

    pairs = load_corpus(CORPUS / "tutorial").pairs
    memory = TranslationMemory()
    for pair in pairs:
        memory.add(pair.msgid, pair.msgstr, pair.msgctxt)
    contract = PromptContract(version=2, translate_labels=True, examples=4, terms=True)
    builder = PromptBuilder(contract, tokenizer, memory, corpus_terms(CORPUS), max_length=700)
    sources = [p.msgid for p in pairs[:160]]
    contexts = [p.msgctxt for p in pairs[:160]]
    shown = builder.examples_for(sources)
    batched = builder.prompts(sources, contexts, shown)
    rows = zip(sources, contexts, shown, strict=True)
    alone = [builder.prompt(s, m, examples=e) for s, m, e in rows]
    assert batched == alone
    dropped = sum(len(p.examples) < len(e) for p, e in zip(batched, shown, strict=True))
    assert dropped >= 5  # prompts that had to leave room
    counted = tokenizer([p.source for p in batched], add_special_tokens=False)["input_ids"]
    assert [p.source_tokens for p in batched] == [len(ids) for ids in counted]
    assert sum(bool(p.terms) for p in batched) >= 5
    assert builder.prompts([], [], []) == []
