"""Terminology of a corpus: English terms and the Taiwan Chinese the project uses for
them, from its glossary (``glossary.po``: ``context manager`` ->
``context manager（情境管理器）``). Stored with the adapter as ``terms.jsonl``, one
``{"source": ..., "target": ...}`` a line; matched in sources as whole words, any case.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

import msgspec
import polib

TERMS = "terms.jsonl"
MAX_TERM_WORDS = 4
MAX_TERMS_IN_PROMPT = 8
# msgstr "english term（中文）" (full-width or ASCII parentheses)
_GLOSSED_RE = re.compile(r"^(?P<en>[^（(]+?)\s*[（(](?P<zh>[^（）()]+)[）)]$")
_HAN_RE = re.compile("[\u4e00-\u9fff]")


class Term(msgspec.Struct, frozen=True):
    source: str
    target: str


def glossary_terms(pairs: Iterable[tuple[str, str]]) -> list[Term]:
    """Terms of a glossary's (msgid, msgstr) pairs: short msgids whose msgstr glosses
    them (``term（譯名）``) or is the Chinese term itself."""
    found: dict[str, Term] = {}
    for msgid, msgstr in pairs:
        msgid, msgstr = msgid.strip(), msgstr.strip()
        if not msgid or len(msgid.split()) > MAX_TERM_WORDS or "`" in msgid + msgstr:
            continue
        glossed = _GLOSSED_RE.match(msgstr)
        if glossed and glossed["en"].strip().lower() == msgid.lower():
            target = glossed["zh"].strip()
        elif _HAN_RE.search(msgstr) and not re.search("[A-Za-z]", msgstr):
            target = msgstr
        else:
            continue
        if _HAN_RE.search(target):
            found.setdefault(msgid.lower(), Term(msgid, target))
    return sorted(found.values(), key=lambda t: t.source.lower())


def read_glossary(path: Path) -> list[Term]:
    """The terms of a ``glossary.po``."""
    catalog = polib.pofile(str(path))
    return glossary_terms(
        (e.msgid, e.msgstr) for e in catalog if e.msgstr and not e.obsolete and not e.fuzzy
    )


def corpus_terms(tree: Path) -> list[Term]:
    """The terms of a .po tree's glossary (``glossary.po`` at its root), if it has one."""
    glossary = tree / "glossary.po"
    return read_glossary(glossary) if glossary.is_file() else []


def terms_text(terms: Iterable[Term]) -> str:
    """The terms.jsonl form of ``terms``: one JSON object a line."""
    return "".join(
        json.dumps({"source": t.source, "target": t.target}, ensure_ascii=False) + "\n"
        for t in terms
    )


def write_terms(folder: Path, terms: Iterable[Term] | Path) -> Path:
    """Write ``folder/terms.jsonl`` from terms or from a glossary.po path."""
    if isinstance(terms, Path):
        terms = read_glossary(terms)
    path = folder / TERMS
    path.write_text(terms_text(terms), encoding="utf-8")
    return path


def load_terms(folder: Path) -> list[Term]:
    """Read ``folder/terms.jsonl``; a missing file is no terms. Bad lines raise
    ValueError naming the file and line."""
    path = folder / TERMS
    return read_terms(path) if path.is_file() else []


def read_terms(path: Path) -> list[Term]:
    """The terms of a terms.jsonl file. Bad lines raise ValueError naming the file and
    line."""
    terms = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            term = msgspec.json.decode(line, type=Term)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{path}:{number}: bad term ({exc})") from None
        if not term.source.strip() or not term.target.strip():
            raise ValueError(f"{path}:{number}: bad term (empty source or target)")
        terms.append(term)
    return terms


def merge_terms(first: Iterable[Term], more: Iterable[Term]) -> list[Term]:
    """``first`` and then the terms of ``more`` whose source (in any case) it lacks."""
    merged = {t.source.lower(): t for t in first}
    for term in more:
        merged.setdefault(term.source.lower(), term)
    return list(merged.values())


class TermMatcher:
    """The terms found in a text, as whole words, in any case."""

    def __init__(self, terms: Iterable[Term]) -> None:
        self._by_key = {t.source.lower(): t for t in terms}
        self._pattern = _pattern(tuple(sorted(self._by_key, key=lambda s: (-len(s), s))))

    def __len__(self) -> int:
        return len(self._by_key)

    def match(self, text: str, limit: int = MAX_TERMS_IN_PROMPT) -> list[Term]:
        if self._pattern is None:
            return []
        found: dict[str, Term] = {}
        for m in self._pattern.finditer(text):
            found.setdefault(m.group(0).lower(), self._by_key[m.group(0).lower()])
            if len(found) == limit:
                break
        return list(found.values())


@functools.cache
def _pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    if not keys:
        return None
    alternatives = "|".join(re.escape(k) for k in keys)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)
