"""Reading a catalog, choosing the entries to fill, filling them, writing it back.

Writing goes polib (no wrapping) -> ``msgcat`` (gettext's own wrapping, exactly what
``powrap`` does), so the result is what ``powrap`` would write and ``powrap --check``
changes nothing. Every written text is checked with ``msgfmt --check`` and sphinx-lint;
an entry that makes either complain is turned fuzzy (or reverted) before writing.
"""

from __future__ import annotations

import bisect
import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polib

from clients.filesafe import Fingerprint
from core.catalogs import CatalogError, nplurals, plural_source, read_checked

NOTE_PREFIX = "polingo: "  # translator comments this tool writes (and replaces on a redo)
CONFIDENCE_NOTE = "confidence "  # "# polingo: confidence 0.83": not a warning
# An updated fuzzy entry keeps the human's translation in a translator comment (msgcat,
# powrap and Poedit keep those), as one JSON string so that it comes back exactly.
PREVIOUS_NOTE = "previous translation: "
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MSGFMT_LINE_RE = re.compile(r"^<stdin>:(\d+): (.*)$")


@dataclass
class _Saved:
    msgstr: str
    msgstr_plural: dict[int, str]
    flags: list[str]
    tcomment: str
    previous: tuple[str | None, str | None, str | None]


@dataclass(eq=False)
class Unit:
    """One entry to fill: the texts to send and where their translations go."""

    entry: polib.POEntry
    texts: list[str]  # [msgid] or, for plural entries, the msgid and/or msgid_plural needed
    forms: dict[int, int]  # plural form index -> index in texts (empty for singular entries)
    redo: bool  # the entry was fuzzy (--include-fuzzy)
    saved: _Saved
    # update mode: (previous msgid, its translation) of a fuzzy entry msgmerge left
    previous: tuple[str, str] | None = None
    status: str = "pending"  # filled | flagged | skipped | failed | pending
    from_memory: bool = False
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    confidence: float | None = None  # written as "# polingo: confidence 0.83"

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.entry.msgctxt, self.entry.msgid)

    @property
    def line(self) -> int:
        return self.entry.linenum or 0


class Catalog:
    def __init__(self, path: Path, fingerprint: Fingerprint, text: str) -> None:
        """``text``: the catalog as read. Entries are parsed from its msgcat form, whose
        blocks (one entry each, separated by one blank line) are kept verbatim except
        for the entries this run changes."""
        self.path = path
        self.fingerprint = fingerprint
        # the file's line ending, kept when it is written (msgcat's output has "\n")
        self.newline = "\r\n" if text.partition("\n")[0].endswith("\r") else "\n"
        self._normalized = run_msgcat(text, path)
        self._blocks = self._normalized.rstrip("\n").split("\n\n")
        self.po = polib.pofile(self._normalized, wrapwidth=0)
        starts, line = [], 1
        for block in self._blocks:
            starts.append(line)
            line += block.count("\n") + 2
        self._block_of = {id(e): bisect.bisect_right(starts, e.linenum) - 1 for e in self.po}
        self._changed: dict[int, polib.POEntry] = {}
        self._baseline_lint: Counter | None = None
        self._last_parse: tuple[str, list[polib.POEntry]] | None = None
        if self._normalized != text:  # report lines of the file as it is, not as msgcat has it
            lines = {(e.msgctxt, e.msgid, e.obsolete): e.linenum for e in polib.pofile(text)}
            for entry in self.po:
                entry.linenum = lines.get(
                    (entry.msgctxt, entry.msgid, entry.obsolete), entry.linenum
                )
        self.nplurals = nplurals(self.po)

    # ---- choosing ----
    def units(self, *, include_fuzzy: bool, update_fuzzy: bool = False) -> list[Unit]:
        """Entries that need a translation: untranslated (not obsolete, never the header),
        with ``update_fuzzy`` the fuzzy ones whose previous msgid (``#| msgid``) and
        translation msgmerge kept (updated, not translated anew), and with
        ``include_fuzzy`` the other fuzzy ones too, in file order."""
        chosen = []
        for entry in self.po:
            if entry.obsolete or entry.msgid == "":
                continue
            redo = "fuzzy" in entry.flags
            if redo and update_fuzzy and updatable(entry):
                if previous_translation(entry) is None:  # not updated by an earlier run
                    previous = (entry.previous_msgid, entry.msgstr)
                    chosen.append(Unit(entry, [entry.msgid], {}, False, _save(entry), previous))
                continue
            if redo and not include_fuzzy:
                continue
            if entry.msgid_plural:
                unit = self._plural_unit(entry, redo)
            elif redo or not entry.msgstr:
                unit = Unit(entry, [entry.msgid], {}, redo, _save(entry))
            else:
                unit = None
            if unit is not None:
                chosen.append(unit)
        return chosen

    def _plural_unit(self, entry: polib.POEntry, redo: bool) -> Unit | None:
        wanted = [i for i in range(self.nplurals) if redo or not entry.msgstr_plural.get(i)]
        if not wanted:
            return None
        texts: list[str] = []
        forms: dict[int, int] = {}
        for i in wanted:
            text = plural_source(entry, i, self.nplurals)
            if text not in texts:
                texts.append(text)
            forms[i] = texts.index(text)
        return Unit(entry, texts, forms, redo, _save(entry))

    def unit_of(self, entry: polib.POEntry) -> Unit:
        """A unit over every msgstr of ``entry``, one text per plural form (so each form
        gets its own output, even where two forms translate the same source), for a
        caller that rewrites a translation as a whole (the review page)."""
        redo = "fuzzy" in entry.flags
        if not entry.msgid_plural:
            return Unit(entry, [entry.msgid], {}, redo, _save(entry))
        texts = [plural_source(entry, i, self.nplurals) for i in range(self.nplurals)]
        return Unit(entry, texts, {i: i for i in range(self.nplurals)}, redo, _save(entry))

    # ---- filling ----
    def fill(self, unit: Unit, outputs: list[str], *, fuzzy: bool, notes: list[str]) -> None:
        """Write a unit's translations. An update stays fuzzy, keeps its ``#|`` lines and
        notes the previous translation (``restore_previous`` puts it back)."""
        entry = unit.entry
        if unit.forms:
            for i, t in unit.forms.items():
                entry.msgstr_plural[i] = outputs[t]
        else:
            entry.msgstr = outputs[0]
        if unit.previous is not None:
            notes = [PREVIOUS_NOTE + json.dumps(unit.previous[1], ensure_ascii=False), *notes]
            fuzzy = True
        else:
            entry.previous_msgctxt = entry.previous_msgid = entry.previous_msgid_plural = None
        self._set_fuzzy(entry, fuzzy or bool(notes))
        self._set_notes(unit, notes)
        self._changed[id(entry)] = entry

    def flag(self, unit: Unit, note: str) -> None:
        """Keep a written translation but as fuzzy, with a comment naming the problem."""
        self._set_fuzzy(unit.entry, True)
        self._set_notes(unit, [*unit.notes, note])

    def revert(self, unit: Unit) -> None:
        entry, saved = unit.entry, unit.saved
        entry.msgstr = saved.msgstr
        entry.msgstr_plural = dict(saved.msgstr_plural)
        entry.flags = list(saved.flags)
        entry.tcomment = saved.tcomment
        entry.previous_msgctxt, entry.previous_msgid, entry.previous_msgid_plural = saved.previous
        unit.notes = []
        self._changed.pop(id(entry), None)

    @staticmethod
    def _set_fuzzy(entry: polib.POEntry, fuzzy: bool) -> None:
        flags = [f for f in entry.flags if f != "fuzzy"]
        entry.flags = ["fuzzy", *flags] if fuzzy else flags

    @staticmethod
    def _set_notes(unit: Unit, notes: list[str]) -> None:
        kept = [ln for ln in unit.saved.tcomment.splitlines() if not ln.startswith(NOTE_PREFIX)]
        ours = [NOTE_PREFIX + n for n in notes]
        if unit.confidence is not None:
            ours.append(f"{NOTE_PREFIX}{CONFIDENCE_NOTE}{unit.confidence:.2f}")
        unit.entry.tcomment = "\n".join(kept + ours)
        unit.notes = list(notes)

    # ---- writing ----
    def render(self) -> str:
        """The catalog as ``powrap`` would write it: the blocks of the entries this run
        changed are rendered anew, every other byte is the catalog's own."""
        blocks = list(self._blocks)
        for key, entry in self._changed.items():
            blocks[self._block_of[key]] = entry.__unicode__(0).rstrip("\n")
        return run_msgcat("\n\n".join(blocks) + "\n", self.path)

    def parsed(self, rendered: str) -> list[polib.POEntry]:
        """polib's entries of ``rendered`` (a rendering of this catalog). The last parse is
        kept: the checks and the writer's line report read the same text, and parsing
        is most of a write's time."""
        if self._last_parse is None or self._last_parse[0] != rendered:
            self._last_parse = (rendered, list(polib.pofile(rendered, wrapwidth=0)))
        return self._last_parse[1]

    def problems(self, rendered: str, units: list[Unit]) -> tuple[dict[Unit, list[str]], list[str]]:
        """What ``msgfmt --check`` and sphinx-lint find in ``rendered``, per filled unit,
        plus the findings no filled unit explains."""
        written = [u for u in units if u.status in ("filled", "flagged")]
        by_key = {u.key: u for u in written}
        found: dict[Unit, list[str]] = {}
        stray: list[str] = []
        parsed = self.parsed(rendered)
        starts, keys = _entry_starts(rendered, parsed)
        for line, message in _msgfmt_errors(rendered):
            i = bisect.bisect_right(starts, line) - 1
            unit = by_key.get(keys[i]) if i >= 0 else None
            if unit is None:
                stray.append(f"msgfmt: line {line}: {message}")
            else:
                found.setdefault(unit, []).append(f"msgfmt: {message}")
        after = _lint_errors(rendered, parsed)
        if after:
            if self._baseline_lint is None:
                baseline = list(polib.pofile(self._normalized, wrapwidth=0))
                self._baseline_lint = Counter(_lint_errors(self._normalized, baseline))
            before = self._baseline_lint
            order = [(e.linenum, (e.msgctxt, e.msgid)) for e in parsed if not e.obsolete]
            for key, message in (Counter(after) - before).elements():
                unit = by_key.get(key) or _preceding(order, key, by_key)
                if unit is None:
                    stray.append(f"sphinx-lint: {message}")
                else:
                    found.setdefault(unit, []).append(f"sphinx-lint: {message}")
        return found, stray

    def render_checked(self, units: list[Unit], *, on_invalid: str) -> str:
        """``render`` after making every finding of msgfmt/sphinx-lint go away: the entry
        that causes one is kept as fuzzy with a note (``on_invalid="fuzzy"``, which both
        tools ignore) or put back as it was (``"skip"``)."""
        for _ in range(4):
            text = self.render()
            found, stray = self.problems(text, units)
            if not found and not stray:
                return text
            for unit, messages in found.items():
                note = "; ".join(dict.fromkeys(messages))
                if unit.previous is not None:  # the human's translation stays as it was
                    self.revert(unit)
                    unit.status, unit.reason = "kept", note
                elif on_invalid == "skip":
                    self.revert(unit)
                    unit.status, unit.reason = "skipped", note
                else:
                    self.flag(unit, note)
                    unit.status = "flagged"
            if stray and not found:
                break
        raise CatalogError(f"{self.path}: cannot write a valid catalog: {'; '.join(stray)[:500]}")


def updatable(entry: polib.POEntry) -> bool:
    """A fuzzy entry that msgmerge left with its previous msgid and translation."""
    return (
        "fuzzy" in entry.flags
        and bool(entry.previous_msgid)
        and bool(entry.msgstr.strip())
        and not entry.msgid_plural
    )


def previous_translation(entry: polib.POEntry) -> str | None:
    """The translation an update replaced, from its translator comment; None if none."""
    for line in (entry.tcomment or "").splitlines():
        if line.startswith(NOTE_PREFIX + PREVIOUS_NOTE):
            try:
                value = json.loads(line[len(NOTE_PREFIX + PREVIOUS_NOTE) :])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, str) else None
    return None


def restore_previous(entry: polib.POEntry) -> bool:
    """Undo an update: the previous translation back as msgstr, the entry fuzzy with its
    ``#|`` lines as msgmerge left it, polingo's notes gone. False if it was no update."""
    old = previous_translation(entry)
    if old is None:
        return False
    entry.msgstr = old
    kept = [ln for ln in (entry.tcomment or "").splitlines() if not ln.startswith(NOTE_PREFIX)]
    entry.tcomment = "\n".join(kept)
    if "fuzzy" not in entry.flags:
        entry.flags.insert(0, "fuzzy")
    return True


def load_catalog(path: Path) -> Catalog:
    """Read and check one catalog; ``CatalogError`` names the file and line of a problem."""
    data = read_checked(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"{path}: not UTF-8 (byte {exc.start}); only UTF-8 is supported"
        ) from None
    try:
        catalog = Catalog(path, Fingerprint.of(path, data), text)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    charset = re.search(r"charset=([\w-]+)", catalog.po.metadata.get("Content-Type", ""))
    if charset and charset.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise CatalogError(
            f"{path}: header says charset {charset.group(1)}; only UTF-8 is supported"
        )
    return catalog


def clean_output(source: str, output: str) -> str:
    """A model's output made safe to store: no control characters, and the same leading
    and trailing newlines as the source (msgfmt insists on that)."""
    core = _CONTROL_RE.sub("", output).strip("\n")
    lead = source[: len(source) - len(source.lstrip("\n"))]
    trail = source[len(source.rstrip("\n")) :] if source.strip("\n") else ""
    return lead + core + trail if core.strip() else ""


def run_msgcat(text: str, path: Path) -> str:
    done = subprocess.run(["msgcat", "-", "-o", "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise CatalogError(f"{path}: msgcat could not format the catalog: {done.stderr.strip()}")
    return done.stdout


def _save(entry: polib.POEntry) -> _Saved:
    previous = (entry.previous_msgctxt, entry.previous_msgid, entry.previous_msgid_plural)
    plural = dict(entry.msgstr_plural)
    return _Saved(entry.msgstr, plural, list(entry.flags), entry.tcomment, previous)


def _entry_starts(rendered: str, parsed: list[polib.POEntry]) -> tuple[list[int], list]:
    """First line of each entry's block (comments included) and the entry's key."""
    lines = rendered.splitlines()
    starts, keys = [], []
    for entry in parsed:
        start = entry.linenum
        while start > 1 and lines[start - 2].strip():
            start -= 1
        starts.append(start)
        keys.append((entry.msgctxt, entry.msgid))
    return starts, keys


def _msgfmt_errors(rendered: str) -> list[tuple[int, str]]:
    command = ["msgfmt", "--check", "-o", "/dev/null", "-"]
    done = subprocess.run(command, input=rendered, capture_output=True, text=True)
    if done.returncode == 0:
        return []
    errors = []
    for line in done.stderr.splitlines():
        match = _MSGFMT_LINE_RE.match(line)
        if match and "warning:" not in match.group(2):
            errors.append((int(match.group(1)), match.group(2)))
    return errors or [(0, done.stderr.strip())]


def _lint_errors(
    rendered: str, parsed: list[polib.POEntry]
) -> list[tuple[tuple[str | None, str], str]]:
    """sphinx-lint's findings on the translated entries (``parsed``: ``rendered``'s
    entries), as (entry key, message)."""
    from sphinxlint import check_text
    from sphinxlint.checkers import all_checkers
    from sphinxlint.utils import po2rst

    translated = [e for e in parsed if e.translated()]
    if not translated:
        return []
    starts = [e.linenum for e in translated]
    enabled = {c for c in all_checkers.values() if c.enabled}
    found = []
    for error in check_text("catalog.po", po2rst(rendered), enabled):
        i = max(bisect.bisect_right(starts, error.line_no) - 1, 0)
        entry = translated[i]
        found.append(((entry.msgctxt, entry.msgid), f"{error.msg} ({error.checker_name})"))
    return found


def _preceding(order: list, key: tuple, by_key: dict) -> Unit | None:
    """The filled unit just before ``key`` in the file: a new finding in an untouched entry
    can only come from the text that now precedes it."""
    best = None
    for _, k in order:
        if k == key:
            return best
        if k in by_key:
            best = by_key[k]
    return best
