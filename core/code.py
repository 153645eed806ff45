"""Code is copied, not translated.

An entry that is code (a doctest, a shell session, a Python sample, a dotted or
snake_case name) comes back with its code byte-identical to the source; only its
comments may change, since that is all this project's translators translate there.
In the python-docs-zh-tw snapshots (2024-07-20 and 2024-10-19), 98% of such entries'
human translations equal their source and all but 2 of the rest differ only in ``#``
comments (a misaligned entry, a translated docstring); bench/trust_rules.py counts them.
One-word entries are not code: the corpus translates 42% of them ("object（物件）").
An entry is the unit: the corpus has no prose entry with a code block inside it.

Any other entry of several lines is a literal ``block`` (program output, a C sample,
a license): Sphinx joins a paragraph's lines into one msgid, so only literal blocks and
HTML templates keep their line breaks. In 2024-10-19, 308 of the 322 such entries are
copied, 8 change only comments (``#`` or ``/* */``), and the other 6 are the wrapped
paragraphs of ``sphinx.po``'s HTML templates, which this rule keeps in English.

``keep_code(source, output)`` aligns the lines of both by their code (the line
without its comment): a line whose code the output kept is taken from the output
(its comment may be translated), any other line is the source's line, and each
reverted line is named in a warning.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from typing import Literal

CodeKind = Literal["doctest", "shell", "python", "block", "name"]

_SHELL_RE = re.compile(r"(\(\S+\) )?[$%] [\w./~\"'-]")
_NAME_RE = re.compile(r"[A-Za-z_]\w*([._]\w+)+(\(\))?")
# a block's comment: # or /* at the line's start or after a blank
_BLOCK_COMMENT_RE = re.compile(r"(?:^|(?<=[ \t]))(#|/\*)")


def code_kind(source: str) -> CodeKind | None:
    """What kind of code ``source`` is, or None for text to translate."""
    first = source.lstrip("\n").split("\n", 1)[0]
    if first.startswith(">>>"):
        return "doctest"
    if _SHELL_RE.match(first):
        return "shell"
    if _NAME_RE.fullmatch(source):
        return "name"
    if "\n" in source.strip():
        return "python" if _parses(source) else "block"
    return None


def _parses(source: str) -> bool:
    try:
        with warnings.catch_warnings():  # invalid escape sequences in samples
            warnings.simplefilter("ignore")
            ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def split_comment(line: str, kind: CodeKind) -> tuple[str, str]:
    """(code, comment) of one line: the comment starts at a ``#`` outside a string
    literal (in a shell session, one at the line's start or after a blank)."""
    if kind == "name":
        return line, ""
    if kind == "block":  # no string literals to skip: quotes in text or output are not code
        found = _BLOCK_COMMENT_RE.search(line)
        return (line[: found.start()].rstrip(), line[found.start() :]) if found else (line, "")
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == "\\" and kind != "shell":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (kind != "shell" or i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i:]
        i += 1
    return line.rstrip(), ""


def code_lines(text: str, kind: CodeKind) -> list[str]:
    """The lines of ``text`` without their comments."""
    return [split_comment(line, kind)[0] for line in text.split("\n")]


def keep_code(source: str, output: str) -> tuple[str, list[str]]:
    """``output`` with the code of ``source`` restored, and a warning naming the lines
    reverted; an output that changed only comments (or a source that is not code)
    comes back as it is, with no warning."""
    kind = code_kind(source)
    if kind is None:
        return output, []
    src_lines, out_lines = source.split("\n"), output.split("\n")
    src_code, out_code = code_lines(source, kind), code_lines(output, kind)
    if src_code == out_code:
        return output, []
    kept: list[str] = []
    reverted: list[int] = []
    matcher = difflib.SequenceMatcher(None, src_code, out_code, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            kept.extend(out_lines[j1:j2])
        else:
            kept.extend(src_lines[i1:i2])
            reverted.extend(range(i1 + 1, i2 + 1))
    lines = ", ".join(map(str, reverted)) if reverted else "none (lines were added)"
    warning = (
        f"code changed outside comments: reverted to the source ({kind}; source lines {lines})"
    )
    return "\n".join(kept), [warning]
