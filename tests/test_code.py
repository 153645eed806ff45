"""Code is copied, not translated (core/code.py), on the held-out predictions of the
shipped adapter and through the translator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.code import code_kind, code_lines, keep_code, split_comment

PREDICTIONS = Path(__file__).parents[1] / "core/default_adapter/zh-tw/v3/report/predictions.jsonl"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (">>> mode([1, 1, 2, 3, 3, 3, 3, 4])\n3", "doctest"),
        ("$ python -m sysconfig\nPlatform: x", "shell"),
        ("(example) $ python\n>>> import sys", "shell"),
        ("os.path.join", "name"),
        ("PYTHONSAFEPATH", None),  # one word: the corpus translates 42% of them
        ("decimal", None),
        ("$ (dollar)", None),  # an index entry, translated as "$ （金錢符號）"
        ("if x:\n    y = 1  # one", "python"),
        # several lines that are neither: a literal block (Sphinx joins a paragraph's lines)
        ("./configure\nmake\nmake install", "block"),
        ("Copyright (c) 2005 Don Owens\nAll rights reserved.", "block"),
        ("Return the value.", None),
    ],
)
def test_code_kinds_follow_the_corpus(source: str, kind: str | None) -> None:
    assert code_kind(source) == kind


def test_comments_split_outside_string_literals() -> None:
    assert split_comment("x = '#1'  # the first", "python") == ("x = '#1'", "# the first")
    assert split_comment('>>> f("a\\"#")', "doctest") == ('>>> f("a\\"#")', "")
    assert split_comment("$ ls a#b  # list", "shell") == ("$ ls a#b", "# list")
    # a block has no string literals to skip, and C comments besides
    assert split_comment("API 'o' a#b  # note", "block") == ("API 'o' a#b", "# note")
    assert split_comment('ok = f(args, ""); /* No arguments */', "block") == (
        'ok = f(args, "");',
        "/* No arguments */",
    )


def test_a_block_keeps_its_lines_and_its_translated_comments() -> None:
    """The two block entries the shipped v4 and v5 changed on the held-out splits (a
    dropped line, a lost indentation), and a C sample whose comment the corpus translates
    (extending/newtypes.po)."""
    source = "./configure\nmake\nmake install"
    text, warnings = keep_code(source, "./configure\nmake install")
    assert text == source
    assert warnings == [
        "code changed outside comments: reverted to the source (block; source lines 2)"
    ]
    source = "      214 function calls in 0.002 seconds\n\nOrdered by: cumulative time"
    assert keep_code(source, source.lstrip())[0] == source
    source = "/* Iterators */\ngetiterfunc tp_iter;\niternextfunc tp_iternext;"
    human = "/* 疊代器 */\ngetiterfunc tp_iter;\niternextfunc tp_iternext;"
    assert keep_code(source, human) == (human, [])


def test_translated_comments_stay_and_changed_code_is_reverted_by_line() -> None:
    source = ">>> Color(7)  # or Color(-1)\n<Color.WHITE: 7>\n>>> mode([1, 3, 3])\n3"
    only_comments = ">>> Color(7)  # 或 Color(-1)\n<Color.WHITE: 7>\n>>> mode([1, 3, 3])\n3"
    assert keep_code(source, only_comments) == (only_comments, [])
    changed = ">>> Color(7)  # 或 Color(-1)\n<Color.WHITE: 7>\n>>> mode([1, 3])\n3"
    text, warnings = keep_code(source, changed)
    assert text == only_comments  # the comment kept, line 3 restored
    assert warnings == [
        "code changed outside comments: reverted to the source (doctest; source lines 3)"
    ]


def test_dropped_and_added_lines_are_restored() -> None:
    source = ">>> sorted(d)\n['a',\n 'b',\n 'c']"
    text, warnings = keep_code(source, ">>> sorted(d)\n['a',\n 'c']\n>>> extra")
    assert text == source and "source lines 3" in warnings[0]


def test_prose_is_untouched() -> None:
    assert keep_code("decimal", "decimal（十進位）") == ("decimal（十進位）", [])


def test_no_held_out_code_entry_is_altered_outside_comments() -> None:
    """zh-tw@v3's 567 held-out predictions: 4 code entries came back with changed code (a
    doctest's list, a shell session replaced; none of its 9 blocks); none after
    keep_code, and the references' translated comments are what the rule keeps."""
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines()]
    code = [r for r in rows if code_kind(r["msgid"])]
    assert len(rows) == 567 and len(code) == 79

    def altered(row: dict, text: str) -> bool:
        kind = code_kind(row["msgid"])
        return code_lines(text, kind) != code_lines(row["msgid"], kind)

    assert sum(altered(r, r["output"]) for r in code) == 4
    fixed = [keep_code(r["msgid"], r["output"]) for r in code]
    assert sum(altered(r, text) for r, (text, _) in zip(code, fixed, strict=True)) == 0
    assert sum(bool(w) for _, w in fixed) == 4
    assert all(keep_code(r["msgid"], r["reference"]) == (r["reference"], []) for r in code)


def test_the_translator_returns_code_as_the_source_has_it(tiny_model_dir: Path) -> None:
    import asyncio
    from types import SimpleNamespace

    from test_service_helpers import stub_translator
    from test_service_units import ScriptedEngine
    from transformers import AutoTokenizer

    from core.memory import TranslationMemory
    from core.prompt import PromptBuilder, PromptContract
    from core.settings import Settings
    from service.schemas import TranslateItem

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    source = ">>> mode([1, 1, 2, 3, 3, 3, 3, 4])  # the most common\n3"
    engine = ScriptedEngine(tokenizer, [">>> mode([1, 1, 2, 3, 3, 3, 4])  # 最常見的\n3"], {})
    adapter = SimpleNamespace(
        key="zh@v1",
        manifest=SimpleNamespace(contract=PromptContract()),
        prompts=PromptBuilder(PromptContract(), tokenizer),
        memory=TranslationMemory(),
        in_flight=0,
    )
    translator = stub_translator(engine, tokenizer, tiny_model_dir, Settings(markup_retries=0))
    (outcome,) = asyncio.run(translator.translate_items(adapter, [TranslateItem(source)]))
    assert outcome.text == source
    assert "code changed outside comments" in outcome.warnings[0]
