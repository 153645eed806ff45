"""Issue 17: simplified Chinese (OpenCC, hanzidentifier), escaped spaces checked with the
real sphinx-lint, and the quality metrics of training/quality.py."""

from __future__ import annotations

import pytest

from core.chinese import derive_conventions, simplified_characters, to_traditional
from core.markup import check_translation, chinese_warnings
from core.postedit import convert_simplified, escape_markup_spaces, post_edit
from training.quality import label_counts, quality, sphinx_lint_findings

# Human references of the 2024-10-19 snapshot (library/stdtypes.po, faq/general.po,
# library/constants.po) that use characters shared by both scripts (台, 干), and one
# made-up sentence with 干擾 and 公里 (里, 后: Taiwan text writes 之後, and 之后 is
# simplified usage, tests/test_simplified_phrases.py).
CLEAN_REFERENCES = [
    "如果目前平台不支援聯接點，則始終回傳 ``False``。",
    "在 Python 教學的\\ :ref:`浮點運算 <tut-fp-issues>`\\ 一章。",
    "這個干擾會在一公里後出現，之後則否。",
    "`最早討論 Python 的文章 <https://ir.cwi.nl/pub/18204>`_\\ 是在 1991 年寫的。",
]


@pytest.mark.parametrize("text", CLEAN_REFERENCES)
def test_taiwan_text_raises_no_warning(text: str) -> None:
    assert chinese_warnings(text) == []
    assert convert_simplified(text) == text


@pytest.mark.parametrize(
    ("mainland", "taiwan"),
    [
        ("超时", "超時"),  # OpenCC's form; the corpus prefers 逾時 (no OpenCC rule for it)
        ("默认值", "預設值"),
        ("以下章節描述了直譯器中内建的標準型別。", "以下章節描述了直譯器中內建的標準型別。"),
        (
            "剖析一個傳遞给 :func:`exec` 函数的字串時；",
            "剖析一個傳遞給 :func:`exec` 函式的字串時；",
        ),
        ("数据类型", "資料型別"),
    ],
)
def test_simplified_is_detected_and_converted(mainland: str, taiwan: str) -> None:
    assert simplified_characters(mainland)
    assert any(w.startswith("simplified characters") for w in check_translation("x", mainland))
    assert convert_simplified(mainland) == taiwan
    assert chinese_warnings(taiwan) == []


def test_conversion_leaves_markup_and_taiwan_usage_alone() -> None:
    text = "参数 ``默认`` 與 :ref:`数据 <数据>` 的參數在平台上"
    # 參數 (parameter) is correct Taiwan usage; OpenCC's s2twp would make it 引數
    assert convert_simplified(text) == "引數 ``默认`` 與 :ref:`資料 <数据>` 的參數在平台上"
    assert to_traditional("台灣") == "台灣"


def test_mainland_phrasing_from_derived_conventions() -> None:
    references = ["回傳一個函式。"] * 6 + ["這個函式的執行緒。"] * 6
    conventions = derive_conventions(references)
    assert conventions["函數"] == "函式" and conventions["線程"] == "執行緒"
    warnings = chinese_warnings("呼叫函數。", conventions)
    assert warnings == ["mainland phrasing: 函數 (use 函式)"]
    # the shipped conventions (2024-10-19 snapshot) know it too
    assert chinese_warnings("呼叫函數。") == ["mainland phrasing: 函數 (use 函式)"]


def test_letters_of_another_script_warn_unless_the_source_has_them() -> None:
    from conftest import SNAPSHOTS

    from core.markup import other_script_letters
    from training.data import load_corpus

    # zh-tw@v3's draft of library/shlex.po line 658 (2024-10-19, translate-po on the CPU)
    source = (
        "Non-quoted escape characters (e.g. ``'\\'``) preserve the literal value of the "
        "next character that follows;"
    )
    draft = (
        "不引用字元（例如 ``'\\'``）的非字元 (non-quoted)  збере存在下一個結果字元的文字元 素值；"
    )
    assert "letters of another script: з б е р" in check_translation(source, draft)
    greek = "The Greek letter π"  # a source's own letters may stay; full-width Latin is Latin
    assert other_script_letters(greek, "希臘字母 π，ｘ 值") == []
    assert other_script_letters("x", "値です한국") == ["で", "す", "한", "국"]
    # no human translation in the repository's real catalogs adds one
    for snapshot in ("2024-07-20", "2024-10-19"):
        pairs = load_corpus(SNAPSHOTS / snapshot).pairs
        assert pairs and not [p for p in pairs if other_script_letters(p.msgid, p.msgstr)]


# Drafts that docutils rejects, as zh-tw@v1 writes them, with the sources they translate.
DRAFTS = [
    ("If ``True`` (the default), call :func:`len`.", "若為 ``True``（預設）則呼叫:func:`len`和"),
    (
        "The `first article <https://ir.cwi.nl/pub/18204>`_ about Python.",
        "`最早的文章 <https://ir.cwi.nl/pub/18204>`_是在",
    ),
]


def test_escaped_spaces_make_sphinx_lint_happy() -> None:
    sources = [s for s, _ in DRAFTS]
    drafts = [d for _, d in DRAFTS]
    assert len(sphinx_lint_findings(sources, drafts)) >= 3
    fixed = [post_edit(d, s) for s, d in DRAFTS]
    assert fixed[0] == "若為 ``True``\\ （預設）則呼叫\\ :func:`len`\\ 和"
    assert sphinx_lint_findings(sources, fixed) == []
    # punctuation that the translators write against markup is left as it is
    assert escape_markup_spaces("值為 ``x``。「``y``」", "``x`` ``y``") == "值為 ``x``。「``y``」"
    assert escape_markup_spaces("``x``\\ 中", "``x``") == "``x``\\ 中"


def test_quality_metrics() -> None:
    sources = [
        "See :ref:`the tutorial <tut>` now.",
        "See `the docs <https://x.org>`_.",
        "``None``",
        "Call :func:`len`.",
    ]
    references = [
        "請見\\ :ref:`教學 <tut>`。",
        "請見 `文件 <https://x.org>`_。",
        "``None``",
        "呼叫 :func:`len`。",
    ]
    outputs = [
        "請見\\ :ref:`教學 <tut>`。",
        "請見 `the docs <https://x.org>`_。",
        "``None``",
        "呼叫:func:`len`数",
    ]
    assert label_counts(sources, references, outputs) == (1, 2)
    metrics = quality(sources, references, outputs)
    assert metrics["labels_translated"] == 0.5
    assert metrics["simplified_outputs"] == 1.0
    assert metrics["sphinx_lint_outputs"] >= 1 and metrics["sphinx_lint_references"] == 0
    # the copied ``None`` does not count in chrF on prose
    prose = [0, 1, 3]
    assert (
        metrics["chrf_prose"]
        == quality(
            [sources[i] for i in prose], [references[i] for i in prose], [outputs[i] for i in prose]
        )["chrf_prose"]
    )
