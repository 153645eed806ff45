"""Simplified Chinese and mainland phrasing in Traditional Chinese (Taiwan) text.

Detection is per character: a character counts as simplified only when it has no
Traditional use at all (hanzidentifier's CC-CEDICT tables), so characters shared by
both scripts (里, 干, 台, 后) never raise a warning by themselves. Some of them are
simplified usage in context: 那么 is 那麼 written with 么, which is also a rare
Traditional character; ``SIMPLIFIED_PHRASES`` lists such phrases (none occurs in the human
translations of either python-docs-zh-tw snapshot; OpenCC's s2tw would have changed 234
of them: 台 -> 臺, 只 -> 隻, 了 -> 瞭), and they are detected and converted as phrases.
Conversion goes through OpenCC's
``s2twp`` (phrase-aware, Taiwan vocabulary) but keeps only the changes that replace a
simplified character: OpenCC applied to Taiwan text rewrites correct usage (參數 ->
引數, 台 -> 臺), so the rest of the text is left as written.

Mainland phrasing written in Traditional characters (預設 written as 默認) is found
with a list of conventions, mainland phrase -> Taiwan phrase, derived from a corpus
by ``derive_conventions``: OpenCC proposes the mainland form of each Taiwan phrase
the corpus uses, and only those that the corpus itself avoids are kept.

This module works on plain text; callers mask markup and code first.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import hanzidentifier
import opencc

_HAN_RUN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_HAN_WORD_RE = re.compile("[\u4e00-\u9fff]{2,4}")

# The conventions derived from the 2024-10-19 python-docs-zh-tw snapshot
# (python -m training.conventions DOCS writes it), used when an adapter brings none.
DEFAULT_CONVENTIONS = Path(__file__).with_name("zh_tw_conventions.json")


# Simplified usage of characters that Traditional text also has, as phrases, with
# their one Taiwan form. Checked on both corpus snapshots by bench/trust_rules.py.
SIMPLIFIED_PHRASES = {
    **{f"{head}么": f"{head}麼" for head in ("那", "什", "怎", "这", "這", "多", "要", "甚")},
    **{f"{head}里": f"{head}裡" for head in ("那", "哪", "這", "这", "家", "心", "手")},
    "里面": "裡面",
    "里头": "裡頭",
    **{f"{head}后": f"{head}後" for head in ("之", "然", "以", "最", "此", "前", "背", "隨")},
    "后面": "後面",
    "后来": "後來",
    "后者": "後者",
    "几乎": "幾乎",
    "范例": "範例",
    "模范": "模範",
    **{f"{head}余": f"{head}餘" for head in ("其", "剩", "多")},
}
_PHRASES_RE = re.compile("|".join(sorted(SIMPLIFIED_PHRASES, key=lambda p: (-len(p), p))))


@functools.cache
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


@functools.cache
def is_simplified(char: str) -> bool:
    """Whether ``char`` is a simplified character with no Traditional use."""
    return hanzidentifier.identify(char) == hanzidentifier.SIMPLIFIED


def simplified_characters(text: str) -> list[str]:
    """The simplified characters of ``text``, each once, in order of appearance."""
    found: dict[str, None] = {}
    for run in _HAN_RUN_RE.findall(text):
        for char in run:
            if is_simplified(char):
                found.setdefault(char)
    return list(found)


def simplified_phrases(text: str) -> list[str]:
    """The ``SIMPLIFIED_PHRASES`` of ``text`` (那么), each once, in order of appearance."""
    return list(dict.fromkeys(_PHRASES_RE.findall(text)))


def simplified_usage(text: str) -> list[str]:
    """What a warning names: the simplified characters, then the simplified phrases
    made of characters both scripts have."""
    return simplified_characters(text) + simplified_phrases(text)


def to_traditional(text: str) -> str:
    """``text`` with its simplified characters converted (OpenCC s2twp, phrase by
    phrase: 超时 -> 逾時, 默认 -> 預設) and its ``SIMPLIFIED_PHRASES`` (那么 -> 那麼);
    everything else stays as written."""
    text = _HAN_RUN_RE.sub(lambda m: _convert_run(m.group(0)), text)
    return _PHRASES_RE.sub(lambda m: SIMPLIFIED_PHRASES[m.group(0)], text)


def _convert_run(run: str) -> str:
    if not any(is_simplified(c) for c in run):
        return run
    converted = _converter("s2twp").convert(run)
    # Edits separated by at most one unchanged character form one change, so a phrase
    # stays whole (数据类型 -> 資料型別: 型 is kept, 別 inserted after it).
    changes: list[list[int]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, run, converted, autojunk=False
    ).get_opcodes():
        edit = int(op != "equal")
        if changes and edit and changes[-1][4]:
            changes[-1][1], changes[-1][3] = i2, j2
        elif (
            len(changes) >= 2
            and edit
            and changes[-2][4]
            and not changes[-1][4]
            and changes[-1][1] - changes[-1][0] == 1
        ):
            changes.pop()
            changes[-1][1], changes[-1][3] = i2, j2
        else:
            changes.append([i1, i2, j1, j2, edit])
    out = []
    for i1, i2, j1, j2, edit in changes:
        old = run[i1:i2]
        out.append(converted[j1:j2] if edit and any(map(is_simplified, old)) else old)
    return "".join(out)


def mainland_phrases(text: str, conventions: dict[str, str]) -> list[tuple[str, str]]:
    """(mainland phrase, Taiwan phrase) of each convention that ``text`` breaks."""
    if not conventions:
        return []
    pattern = _conventions_pattern(tuple(sorted(conventions, key=lambda p: (-len(p), p))))
    found: dict[str, None] = {}
    for match in pattern.finditer(text):
        found.setdefault(match.group(0))
    return [(phrase, conventions[phrase]) for phrase in found]


@functools.cache
def _conventions_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, phrases)))


def mainland_form(phrase: str) -> str:
    """The mainland way to write a Taiwan phrase, in Traditional characters
    (OpenCC tw2sp then s2tw: 預設 -> 默認, 執行緒 -> 線程)."""
    return _converter("s2tw").convert(_converter("tw2sp").convert(phrase))


def derive_conventions(
    references: Iterable[str], min_uses: int = 5, max_ratio: float = 0.02
) -> dict[str, str]:
    """Mainland phrase -> Taiwan phrase, for the 2-4 character words that the
    references use at least ``min_uses`` times while writing OpenCC's mainland form
    of them at most ``max_ratio`` as often."""
    texts = list(references)
    words = Counter(w for text in texts for run in _HAN_RUN_RE.findall(text) for w in _ngrams(run))
    conventions: dict[str, str] = {}
    for word, uses in words.most_common():
        if uses < min_uses:
            break
        mainland = mainland_form(word)
        if mainland == word or len(mainland) < 2 or any(is_simplified(c) for c in mainland):
            continue
        if words.get(mainland, 0) <= max_ratio * uses:
            conventions.setdefault(mainland, word)
    return _minimal(conventions)


def _ngrams(run: str) -> Iterable[str]:
    for n in (2, 3, 4):
        for i in range(len(run) - n + 1):
            yield run[i : i + n]


def _minimal(conventions: dict[str, str]) -> dict[str, str]:
    """Drop the conventions that a shorter one already covers (函數的 when 函數 is in)."""
    kept: dict[str, str] = {}
    for mainland in sorted(conventions, key=lambda p: (len(p), p)):
        if not any(short in mainland for short in kept):
            kept[mainland] = conventions[mainland]
    return kept


def write_conventions(path: Path, conventions: dict[str, str]) -> None:
    path.write_text(
        json.dumps(dict(sorted(conventions.items())), ensure_ascii=False, indent=0) + "\n",
        encoding="utf-8",
    )


@functools.cache
def load_conventions(path: Path = DEFAULT_CONVENTIONS) -> dict[str, str]:
    """Read a conventions file ({mainland: taiwan}); a missing file is none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not a JSON object of phrases ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a JSON object mapping phrases to phrases")
    return data
