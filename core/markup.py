"""reST markup and placeholder rules of the python-docs-zh-tw corpus.

A translation must carry every markup item of its source verbatim: roles
(:func:`len`), inline literals (``x``), hyperlinks (`text <url>`_), substitutions
(|name|), footnote and citation references ([#]_) and printf/format placeholders.
Training, evaluation and the service all count markup with this one module.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import regex

from core.chinese import load_conventions, mainland_phrases, simplified_usage

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

# A role or hyperlink with an explicit title (:ref:`label <target>`, `label <url>`_): the
# label is text that translators translate; the role and the target are the invariant.
_TITLED_RE = re.compile(
    r"(?P<head>:[A-Za-z][\w.+:-]*:`|`)(?P<label>[^`<]*[^`<\s])"
    r"(?P<tail>\s*<(?P<target>[^`<>]+)>`(?P<end>__?)?)"
)

# printf-style and str.format placeholders that code depends on.
PLACEHOLDER_RE = re.compile(r"%(?:\([\w.]+\))?[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]|\{[\w.]*\}")


def markup_items(text: str) -> list[str]:
    """The markup items of ``text``, in order of appearance."""
    return MARKUP_RE.findall(text)


def split_titled(item: str) -> tuple[str, str, str] | None:
    """(head, label, tail) of a titled role or hyperlink item, e.g. (":ref:`", "label",
    " <target>`"); None for items without an explicit title (:func:`len`)."""
    match = _TITLED_RE.fullmatch(item)
    if match is None:
        return None
    is_role = match["head"] != "`"
    if is_role == bool(match["end"]):  # a role has no trailing _, a hyperlink needs one
        return None
    return match["head"], match["label"], match["tail"]


def markup_key(item: str) -> str:
    """What a translation must keep of a markup item: the item itself, or for a titled
    role or hyperlink its role and target (":ref:`<target>`"), whatever the label."""
    parts = split_titled(item)
    if parts is None:
        return item
    head, _, tail = parts
    return head + tail.lstrip()


def markup_keys(text: str) -> list[str]:
    """The invariant parts of the markup items of ``text`` (see markup_key)."""
    return [markup_key(item) for item in markup_items(text)]


def titled_labels(text: str) -> list[tuple[str, str]]:
    """(key, label) of each titled role or hyperlink of ``text``."""
    found = []
    for item in markup_items(text):
        parts = split_titled(item)
        if parts is not None:
            found.append((markup_key(item), parts[1]))
    return found


def placeholders(text: str) -> list[str]:
    """printf / str.format placeholders found outside markup items."""
    return PLACEHOLDER_RE.findall(MARKUP_RE.sub(" ", text))


def missing_and_added(source: list[str], output: list[str]) -> tuple[list[str], list[str]]:
    """Items of ``source`` absent from ``output`` and items ``output`` has in excess."""
    src, out = Counter(source), Counter(output)
    return sorted((src - out).elements()), sorted((out - src).elements())


def kept_count(source: str, output: str) -> tuple[int, int]:
    """(items of the source found in the output, items in the source), multiset-wise;
    a titled role or link counts as kept when its role and target are (markup_key)."""
    src = Counter(markup_keys(source))
    out = Counter(markup_keys(output))
    return sum((src & out).values()), sum(src.values())


def prose(text: str) -> str:
    """``text`` with its markup masked: each item becomes a space, except the label of a
    titled role or link, which is text."""

    def mask(match: re.Match[str]) -> str:
        parts = split_titled(match.group(0))
        return f" {parts[1]} " if parts else " "

    return MARKUP_RE.sub(mask, text)


def chinese_warnings(output: str, conventions: dict[str, str] | None = None) -> list[str]:
    """Simplified characters and mainland phrasing (``conventions``: mainland phrase ->
    Taiwan phrase; the shipped python-docs-zh-tw ones by default) in a translation."""
    text = prose(output)
    warnings = []
    chars = simplified_usage(text)
    if chars:
        warnings.append("simplified characters: " + " ".join(chars))
    if conventions is None:
        conventions = load_conventions()
    phrases = mainland_phrases(text, conventions)
    if phrases:
        warnings.append("mainland phrasing: " + ", ".join(f"{m} (use {t})" for m, t in phrases))
    return warnings


# NUL and other C0/C1 controls (a newline or tab is fine) and the bidi controls that
# can reorder displayed text (U+202A-U+202E, U+2066-U+2069, marks U+200E/F, U+061C).
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def control_characters(source: str, output: str) -> list[str]:
    """Control and bidi characters of ``output`` that ``source`` does not have, as U+XXXX."""
    found = set(_CONTROL_RE.findall(output)) - set(_CONTROL_RE.findall(source))
    return [f"U+{ord(c):04X}" for c in sorted(found)]


# Letters of a script that is neither the source's Latin nor Chinese (Han, Bopomofo):
# Cyrillic, Greek, kana, Hangul... No human translation of python-docs-zh-tw adds one
# (0 of 19,865 pairs of 2024-10-19, 0 of 2024-07-20's); a 270M model's draft sometimes does.
_OTHER_SCRIPT_RE = regex.compile(
    r"[\p{L}--[\p{Latin}\p{Han}\p{Bopomofo}\p{Common}\p{Inherited}]]", flags=regex.V1
)


def other_script_letters(source: str, output: str) -> list[str]:
    """Letters of ``output`` in another script (Cyrillic, Greek, kana...) that ``source``
    does not have, each once, in order of appearance."""
    have = set(_OTHER_SCRIPT_RE.findall(source))
    return list(dict.fromkeys(c for c in _OTHER_SCRIPT_RE.findall(output) if c not in have))


def check_translation(
    source: str, output: str, conventions: dict[str, str] | None = None
) -> list[str]:
    """Human-readable warnings about what a translation broke; empty when it is clean.
    Titled roles and links count by role and target: a translated label is fine."""
    warnings: list[str] = []
    lost, added = missing_and_added(markup_keys(source), markup_keys(output))
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
    warnings += chinese_warnings(output, conventions)
    foreign = other_script_letters(source, output)
    if foreign:
        warnings.append("letters of another script: " + " ".join(foreign))
    controls = control_characters(source, output)
    if controls:
        warnings.append("control characters: " + " ".join(controls))
    return warnings


def lint_translation(source: str, translation: str) -> list[str]:
    """sphinx-lint's findings on one translation, read as the .po entry it would be (as
    translated: an update stays fuzzy, which a file's check leaves out)."""
    import polib
    from sphinxlint import check_text
    from sphinxlint.checkers import all_checkers
    from sphinxlint.utils import po2rst

    entry = polib.POEntry(msgid=source, msgstr=translation)
    text = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n' + str(entry)
    enabled = {c for c in all_checkers.values() if c.enabled}
    return [f"{e.msg} ({e.checker_name})" for e in check_text("entry.po", po2rst(text), enabled)]


def update_problems(source: str, old: str, output: str, warnings: Iterable[str] = ()) -> list[str]:
    """Why an update's ``output`` must not replace the translation ``old`` of the
    previous source: the markup warnings (``warnings``: the service's, besides
    check_translation's) and sphinx-lint findings it has that ``old`` did not. Empty: it
    may (translate-po's rule, and `polingo eval --updates`'s update-checked mode)."""
    before = set(check_translation(source, old))
    found = [w for w in [*warnings, *check_translation(source, output)] if w not in before]
    old_lint = set(lint_translation(source, old))
    found += [f"sphinx-lint: {f}" for f in lint_translation(source, output) if f not in old_lint]
    return list(dict.fromkeys(found))
