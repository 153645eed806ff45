"""What the review page shows of one entry: which entries need review, their identity
(``entry_id``) and version (``entry_rev``), the warnings polingo has about a draft, the
source with its reST markup highlighted, and the closest human translations.

Warnings come from the modules translate-po and the service use: ``core.markup``
(markup and placeholders lost or added, simplified Chinese, mainland phrasing),
sphinx-lint on the draft, and the ``polingo:`` comments translate-po wrote.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import re
from pathlib import Path

import msgspec
import polib
from markupsafe import Markup

from clients.filling import CONFIDENCE_NOTE, NOTE_PREFIX, PREVIOUS_NOTE, previous_translation
from core.catalogs import plural_source
from core.markup import MARKUP_RE, check_translation, markup_key
from core.memory import TranslationMemory
from core.registry import MEMORY, Registry, RegistryError
from core.retrieval import ExampleIndex
from core.terms import TermMatcher, load_terms

EXAMPLES_SHOWN = 3


class Form(msgspec.Struct, frozen=True):
    source: str
    draft: str


class Example(msgspec.Struct, frozen=True):
    source: str
    translation: str
    exact: bool = False


class TermHint(msgspec.Struct, frozen=True):
    source: str
    translation: str
    used: bool  # the draft contains the project's translation


class EntryView(msgspec.Struct, kw_only=True):
    eid: str
    rev: str
    line: int
    msgctxt: str | None
    forms: list[Form]
    fuzzy: bool
    notes: list[str]  # polingo's comments
    comments: list[str]  # other translator comments, kept as they are
    warnings: list[str]
    lost: list[str]  # markup keys of the source missing from the draft
    examples: list[Example] = []
    terms: list[TermHint] = []
    skipped: bool = False
    confidence: float | None = None  # translate-po's "# polingo: confidence 0.83"
    # an update (translate-po on a fuzzy entry msgmerge left): old -> new, as HTML diffs
    source_diff: str | None = None
    translation_diff: str | None = None


def entry_id(entry: polib.POEntry) -> str:
    """Stable across rewrites of the file: a hash of (msgctxt, msgid)."""
    key = f"{entry.msgctxt or ''}\x04{entry.msgid}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def entry_rev(entry: polib.POEntry) -> str:
    """What a decision was taken on: the translation, flags and comments of the entry.
    A decision sent for another rev is refused (someone changed the entry meanwhile)."""
    plural = "\x1f".join(f"{k}={v}" for k, v in sorted(entry.msgstr_plural.items()))
    state = "\x1e".join([entry.msgstr, plural, ",".join(entry.flags), entry.tcomment])
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def _polingo_lines(entry: polib.POEntry) -> list[str]:
    lines = (entry.tcomment or "").splitlines()
    return [ln.removeprefix(NOTE_PREFIX) for ln in lines if ln.startswith(NOTE_PREFIX)]


def polingo_notes(entry: polib.POEntry) -> list[str]:
    """polingo's warnings about the entry (its confidence and the previous translation
    of an update are no warnings)."""
    return [n for n in _polingo_lines(entry) if not n.startswith((CONFIDENCE_NOTE, PREVIOUS_NOTE))]


# English diffs by word, Chinese by character (it has no spaces between words)
_WORDS_RE = re.compile(r"\s+|\w+|[^\w\s]")


def diff_html(old: str, new: str, *, words: bool) -> str:
    """``old`` -> ``new`` as escaped HTML, removed text in <del>, added text in <ins>."""
    a = _WORDS_RE.findall(old) if words else list(old)
    b = _WORDS_RE.findall(new) if words else list(new)
    out = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


def update_diffs(entry: polib.POEntry) -> tuple[str, str] | None:
    """(source diff, translation diff) of an updated entry; None for other entries."""
    old = previous_translation(entry)
    if old is None or entry.msgid_plural:
        return None
    previous = entry.previous_msgid or entry.msgid
    return (
        diff_html(previous, entry.msgid, words=True),
        diff_html(old, entry.msgstr, words=False),
    )


def confidence(entry: polib.POEntry) -> float | None:
    """The confidence translate-po wrote beside the draft, if any (a value that is no
    number in [0, 1], edited by hand, counts as none)."""
    for note in _polingo_lines(entry):
        if note.startswith(CONFIDENCE_NOTE):
            try:
                value = float(note.removeprefix(CONFIDENCE_NOTE))
            except ValueError:
                return None
            return value if 0 <= value <= 1 else None
    return None


def drafts(entry: polib.POEntry) -> list[str]:
    if entry.msgid_plural:
        return [entry.msgstr_plural[k] for k in sorted(entry.msgstr_plural)]
    return [entry.msgstr]


def needs_review(entry: polib.POEntry) -> bool:
    """A fuzzy entry with a draft, or a translation that polingo left a warning on."""
    if entry.obsolete or not entry.msgid or not any(t.strip() for t in drafts(entry)):
        return False
    return "fuzzy" in entry.flags or bool(polingo_notes(entry))


def forms_of(entry: polib.POEntry, nplurals: int) -> list[Form]:
    if not entry.msgid_plural:
        return [Form(entry.msgid, entry.msgstr)]
    return [
        Form(plural_source(entry, i, nplurals), entry.msgstr_plural.get(i, ""))
        for i in range(nplurals)
    ]


def lint_text(text: str) -> list[str]:
    """sphinx-lint's findings on one translation, read as reST (what it checks of a .po)."""
    from sphinxlint import check_text
    from sphinxlint.checkers import all_checkers

    if not text.strip():
        return []
    enabled = {c for c in all_checkers.values() if c.enabled}
    found = check_text("draft.rst", text if text.endswith("\n") else text + "\n", enabled)
    return [f"sphinx-lint: {e.msg} ({e.checker_name})" for e in found]


def view(entry: polib.POEntry, nplurals: int) -> EntryView:
    forms = forms_of(entry, nplurals)
    warnings: list[str] = []
    lost: list[str] = []
    for form in forms:
        if not form.draft.strip():
            continue
        warnings += check_translation(form.source, form.draft)
        lost += [k for k in _keys(form.source) if k not in _keys(form.draft)]
        warnings += lint_text(form.draft)
    other = [ln for ln in (entry.tcomment or "").splitlines() if not ln.startswith(NOTE_PREFIX)]
    diffs = update_diffs(entry)
    return EntryView(
        eid=entry_id(entry),
        rev=entry_rev(entry),
        line=entry.linenum or 0,
        msgctxt=entry.msgctxt,
        forms=forms,
        fuzzy="fuzzy" in entry.flags,
        notes=polingo_notes(entry),
        confidence=confidence(entry),
        comments=other,
        warnings=list(dict.fromkeys(warnings)),
        lost=sorted(set(lost)),
        source_diff=diffs[0] if diffs else None,
        translation_diff=diffs[1] if diffs else None,
    )


def _keys(text: str) -> list[str]:
    return [markup_key(m) for m in MARKUP_RE.findall(text)]


def _kind(item: str) -> str:
    if item.startswith("``"):
        return "literal"
    if item.startswith(":"):
        return "role"
    if item.endswith("_"):
        return "link" if not item.startswith("[") else "ref"
    if item.startswith("|"):
        return "subst"
    return "interpreted"


def highlight(text: str, lost: list[str] | tuple[str, ...] = ()) -> Markup:
    """``text`` as HTML with each reST markup item in a ``<span class="rst KIND">``
    (``lost`` too where the draft lacks it); everything else escaped."""
    out, end = [], 0
    missing = set(lost)
    for match in MARKUP_RE.finditer(text):
        out.append(html.escape(text[end : match.start()]))
        item = match.group(0)
        classes = f"rst {_kind(item)}" + (" lost" if markup_key(item) in missing else "")
        out.append(f'<span class="{classes}">{html.escape(item)}</span>')
        end = match.end()
    out.append(html.escape(text[end:]))
    return Markup("".join(out))


class MemoryContext:
    """The adapter's translation memory (exact matches, BM25 neighbours) and glossary."""

    def __init__(self, memory: TranslationMemory, matcher: TermMatcher | None = None) -> None:
        self.memory = memory
        self.index = ExampleIndex(memory.pairs())
        self.matcher = matcher

    @classmethod
    def empty(cls) -> MemoryContext:
        return cls(TranslationMemory())

    @classmethod
    def from_registry(cls, registry: Path, adapter: str) -> MemoryContext:
        """The memory and terms of ``adapter`` (NAME or NAME@vN) in ``registry``;
        RegistryError when there is no such adapter."""
        folder = Registry(registry).path(adapter)
        memory = TranslationMemory.load(folder / MEMORY)
        try:
            terms = load_terms(folder)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{folder}: cannot read its terms: {exc}") from None
        return cls(memory, TermMatcher(terms) if terms else None)

    def annotate(self, views: list[EntryView]) -> None:
        """Fill in each view's examples and term hints (one BM25 query for them all)."""
        sources = [v.forms[0].source for v in views]
        found = self.index.search(sources, EXAMPLES_SHOWN)
        for v, source, neighbours in zip(views, sources, found, strict=True):
            exact = self.memory.lookup(source, v.msgctxt)
            shown = [Example(source, exact, True)] if exact else []
            v.examples = shown + [Example(e.msgid, e.msgstr) for e in neighbours]
            if self.matcher is not None:
                draft = " ".join(f.draft for f in v.forms)
                v.terms = [
                    TermHint(t.source, t.target, t.target in draft)
                    for t in self.matcher.match(source)
                ]
