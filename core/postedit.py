"""Deterministic fixes applied to a translation after generation (catalog text in,
catalog text out): simplified characters converted, escaped spaces where docutils
would not see inline markup.

Both steps leave markup and code alone: conversion touches only the text between
markup items (and the labels of titled roles and links), and the escape is inserted
only next to markup items whose role/target the source has.
"""

from __future__ import annotations

import unicodedata

from docutils.utils import punctuation_chars

from core.chinese import to_traditional
from core.markup import MARKUP_RE, markup_key, markup_keys, split_titled

# docutils' own rules (parsers/rst/states.py, Inliner.init_customizations): inline
# markup starts after whitespace, an opener or a delimiter, and ends before whitespace,
# a closing delimiter, a delimiter or a closer.
_BEFORE_START = punctuation_chars.openers + punctuation_chars.delimiters
_AFTER_END = (
    punctuation_chars.closing_delimiters + punctuation_chars.delimiters + punctuation_chars.closers
)
ESCAPED_SPACE = "\\ "


def convert_simplified(text: str) -> str:
    """Simplified characters of the prose converted to Taiwan usage (to_traditional);
    markup items stay verbatim except the labels of titled roles and links."""
    out, last = [], 0
    for match in MARKUP_RE.finditer(text):
        out.append(to_traditional(text[last : match.start()]))
        item = match.group(0)
        parts = split_titled(item)
        out.append(item if parts is None else parts[0] + to_traditional(parts[1]) + parts[2])
        last = match.end()
    out.append(to_traditional(text[last:]))
    return "".join(out)


def _starts_ok(text: str, start: int) -> bool:
    if start == 0 or text[start - 1].isspace() or text[start - 1] in _BEFORE_START:
        return True
    # As after the end (below): the translators write 。``x`` and sphinx-lint accepts it.
    char = text[start - 1]
    return unicodedata.category(char).startswith("P") and char not in punctuation_chars.closers


def _ends_ok(text: str, end: int) -> bool:
    if end == len(text) or text[end].isspace() or text[end] in _AFTER_END:
        return True
    # Full stops and other punctuation that is no opener: the translators write
    # ``x``。 (1,019 times in the 2024-10-19 snapshot, never ``x``\ 。) and
    # sphinx-lint accepts it.
    char = text[end]
    return unicodedata.category(char).startswith("P") and char not in punctuation_chars.openers


def escape_markup_spaces(text: str, source: str | None = None) -> str:
    """Insert ``\\ `` where a markup item touches a character that docutils does not
    accept there (中文:ref:`x` -> 中文\\ :ref:`x`, ``True``（ -> ``True``\\ （). With a
    ``source``, only items whose role/target it has are considered."""
    wanted = set(markup_keys(source)) if source is not None else None
    out, last = [], 0
    for match in MARKUP_RE.finditer(text):
        if wanted is not None and markup_key(match.group(0)) not in wanted:
            continue
        start, end = match.span()
        # (an item right after one that just got its escape needs no second one)
        escaped_before = start == last and out and out[-1] == ESCAPED_SPACE
        out.append(text[last:start])
        if not _starts_ok(text, start) and not escaped_before:
            out.append(ESCAPED_SPACE)
        out.append(match.group(0))
        if not _ends_ok(text, end):
            out.append(ESCAPED_SPACE)
        last = end
    out.append(text[last:])
    return "".join(out)


def post_edit(text: str, source: str) -> str:
    """Both steps, conversion first (it never touches markup or its neighbours'
    punctuation class)."""
    return escape_markup_spaces(convert_simplified(text), source)
