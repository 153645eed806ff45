"""reST markup and placeholder rules of the python-docs-zh-tw corpus.

A translation must carry every markup item of its source verbatim: roles
(:func:`len`), inline literals (``x``), hyperlinks (`text <url>`_), substitutions
(|name|), footnote and citation references ([#]_) and printf/format placeholders.
Training, evaluation and the service all count markup with this one module.
"""

from __future__ import annotations

import re
from collections import Counter

# Order matters: the longer constructs are matched first so that a role's backquoted
# body is not also counted as interpreted text.
_MARKUP_PATTERNS = [
    r"``[^`]+?``",  # inline literal
    r":[A-Za-z][\w.+:-]*:`[^`]+?`",  # role, e.g. :func:`len`, :c:func:`X`
    r"`[^`<]*?<[^`>]+>`__?",  # hyperlink with target, `text <url>`_
    r"`[^`]+?`__?",  # named hyperlink reference, `text`_
    r"\|[^|\s][^|]*?\|_{0,2}",  # substitution reference, |name|
    r"\[(?:#[\w-]*|\*|\d+|[A-Za-z][\w.-]*)\]_",  # footnote / citation reference
    r"`[^`]+?`",  # interpreted text / default role
]
MARKUP_RE = re.compile("|".join(f"(?:{p})" for p in _MARKUP_PATTERNS))

# printf-style and str.format placeholders that code depends on.
PLACEHOLDER_RE = re.compile(r"%(?:\([\w.]+\))?[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]|\{[\w.]*\}")

# Simplified-Chinese / mainland usage that python-docs-zh-tw replaces (term -> Taiwan usage).
SIMPLIFIED_TERMS = {
    "代碼": "程式碼",
    "默認": "預設",
    "返回": "回傳",
    "線程": "執行緒",
    "信息": "資訊",
    "對象": "物件",
    "函數": "函式",
    "變量": "變數",
    "數據": "資料",
    "程序": "程式",
    "文件夾": "資料夾",
    "字符串": "字串",
    "接口": "介面",
}


def markup_items(text: str) -> list[str]:
    """The markup items of ``text``, in order of appearance."""
    return MARKUP_RE.findall(text)


def placeholders(text: str) -> list[str]:
    """printf / str.format placeholders found outside markup items."""
    return PLACEHOLDER_RE.findall(MARKUP_RE.sub(" ", text))


def missing_and_added(source: list[str], output: list[str]) -> tuple[list[str], list[str]]:
    """Items of ``source`` absent from ``output`` and items ``output`` has in excess."""
    src, out = Counter(source), Counter(output)
    return sorted((src - out).elements()), sorted((out - src).elements())


def kept_count(source: str, output: str) -> tuple[int, int]:
    """(items of the source found in the output, items in the source), multiset-wise."""
    src = Counter(markup_items(source))
    out = Counter(markup_items(output))
    return sum((src & out).values()), sum(src.values())


def simplified_terms(text: str) -> list[str]:
    """Simplified-Chinese terms the corpus avoids, as found in ``text``."""
    return [term for term in SIMPLIFIED_TERMS if term in text]


# NUL and other C0/C1 controls (a newline or tab is fine) and the bidi controls that
# can reorder displayed text (U+202A-U+202E, U+2066-U+2069, marks U+200E/F, U+061C).
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def control_characters(source: str, output: str) -> list[str]:
    """Control and bidi characters of ``output`` that ``source`` does not have, as U+XXXX."""
    found = set(_CONTROL_RE.findall(output)) - set(_CONTROL_RE.findall(source))
    return [f"U+{ord(c):04X}" for c in sorted(found)]


def check_translation(source: str, output: str) -> list[str]:
    """Human-readable warnings about what a translation broke; empty when it is clean."""
    warnings: list[str] = []
    lost, added = missing_and_added(markup_items(source), markup_items(output))
    if lost:
        warnings.append("markup lost: " + " ".join(lost))
    if added:
        warnings.append("markup added: " + " ".join(added))
    lost_ph, added_ph = missing_and_added(placeholders(source), placeholders(output))
    if lost_ph or added_ph:
        warnings.append(
            "placeholders changed: "
            + " ".join([f"-{p}" for p in lost_ph] + [f"+{p}" for p in added_ph])
        )
    terms = simplified_terms(output)
    if terms:
        warnings.append(
            "simplified-Chinese terms: "
            + ", ".join(f"{t} (use {SIMPLIFIED_TERMS[t]})" for t in terms)
        )
    controls = control_characters(source, output)
    if controls:
        warnings.append("control characters: " + " ".join(controls))
    return warnings
