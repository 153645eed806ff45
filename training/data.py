"""Training pairs from a tree of gettext catalogs.

Rules (the same for every train, eval and retrain):
- catalogs are found, read and checked by ``core.catalogs`` (the rules translate-po
  uses too); a catalog msgfmt rejects is a problem, not data;
- a pair is a translated entry: not obsolete, not fuzzy, not the header, non-empty
  msgstr; for plural entries, each msgstr[n] pairs with the source it translates:
  msgid_plural -> msgstr[0] where the catalog has one form (zh_TW), else msgid ->
  msgstr[0] and msgid_plural -> msgstr[1];
- pairs are keyed by (msgctxt, msgid); when one key has several translations the
  most frequent wins, ties going to the first in sorted file order;
- two held-out splits, stable across retrains and snapshots:
  - the document split: whole catalogs chosen by a hash of their path relative to the
    tree root (``document_percent`` of the catalogs; the default, about 5% of the pairs); its
    pairs are those whose msgid no other catalog holds, so neither training nor the
    memory ever sees them: a page nobody has translated yet;
  - the pair split: of the other pairs, those chosen by a hash of the msgid alone, so a
    msgid never trains in one retrain and evaluates in another, whatever the file
    order or seed (partly translated pages: their neighbours trained);
- pairs longer than ``max_chars`` (source or translation) are dropped and counted.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polib

from core.catalogs import (
    DEFAULT_NPLURALS,
    CatalogError,
    find_catalogs,
    nplurals,
    plural_source,
    read_catalog,
)

HELDOUT_PERCENT_DEFAULT = 3.0
# percent of the catalogs: 7 holds out 35 of 2024-10-19's 482, 4.95% of its pairs
DOCUMENT_PERCENT_DEFAULT = 7.0
MAX_CHARS_DEFAULT = 2000


@dataclass(frozen=True)
class Pair:
    msgid: str
    msgstr: str
    msgctxt: str | None = None

    @property
    def key(self) -> str:
        return f"{self.msgctxt}\x04{self.msgid}" if self.msgctxt else self.msgid


@dataclass
class Corpus:
    root: Path
    pairs: list[Pair]  # deduplicated, sorted by key
    files: int = 0
    entries: int = 0
    skipped_fuzzy: int = 0
    untranslated: int = 0
    conflicts: int = 0
    duplicates: int = 0
    dropped_too_long: int = 0
    problems: list[str] = field(default_factory=list)
    # msgid -> the catalogs (paths relative to root, "/"-separated) that translate it
    origins: dict[str, set[str]] = field(default_factory=dict)

    def split(
        self,
        heldout_percent: float = HELDOUT_PERCENT_DEFAULT,
        document_percent: float = DOCUMENT_PERCENT_DEFAULT,
    ) -> tuple[list[Pair], list[Pair]]:
        """(train, pair split), stable across retrains; the document split is in neither."""
        splits = self.splits(heldout_percent, document_percent)
        return splits.train, splits.pairs

    def splits(
        self,
        heldout_percent: float = HELDOUT_PERCENT_DEFAULT,
        document_percent: float = DOCUMENT_PERCENT_DEFAULT,
    ) -> Splits:
        """Training pairs, the pair split and the document split (module docstring)."""
        held_files = {
            path
            for paths in self.origins.values()
            for path in paths
            if is_document_heldout(path, document_percent)
        }
        out = Splits(document_files=sorted(held_files))
        for pair in self.pairs:
            paths = self.origins.get(pair.msgid)
            if paths and paths <= held_files:
                out.documents.append(pair)
            elif is_heldout(pair.msgid, heldout_percent):
                out.pairs.append(pair)
            else:
                out.train.append(pair)
        return out

    def fingerprint(self) -> str:
        return fingerprint(self.pairs)


@dataclass
class Splits:
    train: list[Pair] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)  # the pair split
    documents: list[Pair] = field(default_factory=list)  # the document split
    document_files: list[str] = field(default_factory=list)  # its catalogs


def is_heldout(msgid: str, percent: float = HELDOUT_PERCENT_DEFAULT) -> bool:
    return _bucket(msgid) < percent * 100


def is_document_heldout(path: str, percent: float = DOCUMENT_PERCENT_DEFAULT) -> bool:
    """``path``: the catalog's path relative to the tree root, "/"-separated. Salted, so
    that a file named like a msgid is not held out with it."""
    return _bucket("document\x00" + path) < percent * 100


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") % 10_000


def fingerprint(pairs: Iterable[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p.key):
        digest.update(f"{pair.key}\x00{pair.msgstr}\x00".encode())
    return "sha256:" + digest.hexdigest()[:32]


def data_index(pairs: Iterable[Pair]) -> dict[str, str]:
    """key hash -> translation hash: enough to tell new, changed and removed pairs later."""
    return {_short_hash(p.key): _short_hash(p.msgstr) for p in pairs}


def diff_index(old: dict[str, str], new: dict[str, str]) -> dict[str, int]:
    added = sum(1 for k in new if k not in old)
    changed = sum(1 for k, v in new.items() if k in old and old[k] != v)
    removed = sum(1 for k in old if k not in new)
    return {"new_pairs": added, "changed_pairs": changed, "removed_pairs": removed}


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def entry_pairs(entry: polib.POEntry, forms: int = DEFAULT_NPLURALS) -> list[Pair]:
    """The training pairs of one entry (none unless it is a finished translation), in a
    catalog with ``forms`` plural forms: each non-empty ``msgstr[n]`` pairs with the source
    it translates (``core.catalogs.plural_source``), once per source."""
    if entry.obsolete or "fuzzy" in entry.flags or not entry.msgid:
        return []
    ctxt = entry.msgctxt or None
    if not entry.msgid_plural:
        return [Pair(entry.msgid, entry.msgstr, ctxt)] if entry.msgstr.strip() else []
    out: dict[str, Pair] = {}
    for form, text in sorted(entry.msgstr_plural.items()):
        source = plural_source(entry, form, forms)
        if text.strip() and source not in out:
            out[source] = Pair(source, text, ctxt)
    return list(out.values())


def load_corpus(
    root: str | Path, *, strict: bool = False, max_chars: int = MAX_CHARS_DEFAULT
) -> Corpus:
    """Read every catalog under ``root``. Unreadable catalogs are recorded in
    ``problems`` and skipped, or raise CatalogError when ``strict``."""
    root = Path(root)
    corpus = Corpus(root=root, pairs=[])
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    first: dict[tuple[str, str], int] = {}
    ids: dict[str, tuple[str, str | None]] = {}  # key -> (msgid, msgctxt)
    order = 0
    paths, missing = find_catalogs([root])
    if missing:
        raise CatalogError(missing[0])
    for path in paths:
        try:
            catalog = read_catalog(path)
        except CatalogError as exc:
            if strict:
                raise
            corpus.problems.append(str(exc))
            continue
        corpus.files += 1
        where = relative_path(path, root)
        forms = nplurals(catalog)
        for entry in catalog:
            if entry.obsolete or not entry.msgid:
                continue
            corpus.entries += 1
            if "fuzzy" in entry.flags:
                corpus.skipped_fuzzy += 1
                continue
            pairs = entry_pairs(entry, forms)
            if not pairs:
                corpus.untranslated += 1
            for pair in pairs:
                seen[pair.key][pair.msgstr] += 1
                first.setdefault((pair.key, pair.msgstr), order)
                order += 1
                ids.setdefault(pair.key, (pair.msgid, pair.msgctxt))
                corpus.origins.setdefault(pair.msgid, set()).add(where)
    for key in sorted(seen):
        counts = seen[key]
        corpus.duplicates += sum(counts.values()) - 1
        if len(counts) > 1:
            corpus.conflicts += 1
        msgstr = max(counts, key=lambda s: (counts[s], -first[(key, s)]))
        msgid, msgctxt = ids[key]
        if len(msgid) > max_chars or len(msgstr) > max_chars:
            corpus.dropped_too_long += 1
            continue
        corpus.pairs.append(Pair(msgid, msgstr, msgctxt))
    return corpus


def relative_path(path: Path, root: Path) -> str:
    """A catalog's name in the document split: its path under ``root`` (its file name
    when ``root`` is the catalog itself), the same on every machine and snapshot."""
    if path == root or not path.is_relative_to(root):
        return path.name
    return path.relative_to(root).as_posix()


def add_pairs(
    corpus: Corpus,
    extra: Iterable[tuple[str, str, str | None]],
    *,
    max_chars: int = MAX_CHARS_DEFAULT,
) -> int:
    """Add (msgid, msgstr, msgctxt) pairs from elsewhere (the review log) whose key the
    corpus lacks: the catalogs' own translation wins where both have one. Returns the
    number added; the pairs stay sorted by key and split by msgid hash like the rest."""
    have = {p.key for p in corpus.pairs}
    added = 0
    for msgid, msgstr, msgctxt in extra:
        pair = Pair(msgid, msgstr, msgctxt or None)
        if pair.key in have or not msgid or not msgstr.strip():
            continue
        if len(msgid) > max_chars or len(msgstr) > max_chars:
            corpus.dropped_too_long += 1
            continue
        have.add(pair.key)
        corpus.pairs.append(pair)
        added += 1
    corpus.pairs.sort(key=lambda p: p.key)
    return added


def extra_pairs(
    sources: Iterable[Path],
    corpus: Corpus,
    *,
    heldout_percent: float = HELDOUT_PERCENT_DEFAULT,
    document_percent: float = DOCUMENT_PERCENT_DEFAULT,
    max_chars: int = MAX_CHARS_DEFAULT,
) -> tuple[list[Pair], dict[str, int]]:
    """Extra training text (issue 42's recipe): the pairs of other .po trees (an older
    snapshot) and of update triples (.jsonl: ``msgid``/``msgstr`` and
    ``previous_msgid``/``old_msgstr``, ``file``), minus what would leak into either
    held-out split: texts of a held-out catalog (by its path, the same hash) or held-out
    msgids; and minus keys ``corpus`` translates (its translation wins). The pairs, and
    counts of what was kept and left out."""
    have = {p.key for p in corpus.pairs}
    held = {p.msgid for p in corpus.pairs if is_heldout(p.msgid, heldout_percent)}
    held |= {p.msgid for p in corpus.splits(heldout_percent, document_percent).documents}
    counts = Counter[str]()
    out: list[Pair] = []
    for path in sources:
        for pair, where in _extra_source(Path(path), max_chars, counts):
            if pair.key in have:
                counts["known"] += 1
            elif any(is_document_heldout(w, document_percent) for w in where):
                counts["document_split"] += 1
            elif pair.msgid in held or is_heldout(pair.msgid, heldout_percent):
                counts["pair_split"] += 1
            else:
                have.add(pair.key)
                out.append(pair)
    counts["added"] = len(out)
    return out, dict(counts)


def _extra_source(
    path: Path, max_chars: int, counts: Counter[str]
) -> Iterable[tuple[Pair, set[str]]]:
    """(pair, the paths of the catalogs under the source's root that translate it)."""
    if path.suffix == ".jsonl":
        yield from _update_triples(path, max_chars, counts)
        return
    other = load_corpus(path, max_chars=max_chars)
    counts["too_long"] += other.dropped_too_long
    for pair in other.pairs:
        yield pair, other.origins.get(pair.msgid, set())


def _update_triples(
    path: Path, max_chars: int, counts: Counter[str]
) -> Iterable[tuple[Pair, set[str]]]:
    import json

    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts = [(row["msgid"], row["msgstr"]), (row["previous_msgid"], row["old_msgstr"])]
                ctxt, where = row.get("msgctxt") or None, row.get("file")
                if not all(isinstance(t, str) for pair in texts for t in pair):
                    raise TypeError("msgid, msgstr, previous_msgid, old_msgstr must be strings")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{number}: bad update triple ({exc})") from None
            for msgid, msgstr in texts:
                if not msgid or not msgstr.strip():
                    continue
                if len(msgid) > max_chars or len(msgstr) > max_chars:
                    counts["too_long"] += 1
                    continue
                yield Pair(msgid, msgstr, ctxt), {where} if isinstance(where, str) else set()


def stats_lines(
    corpus: Corpus,
    heldout_percent: float = HELDOUT_PERCENT_DEFAULT,
    document_percent: float = DOCUMENT_PERCENT_DEFAULT,
) -> list[str]:
    splits = corpus.splits(heldout_percent, document_percent)
    lines = [
        f"catalogs read       {corpus.files}",
        f"entries             {corpus.entries}",
        f"fuzzy (skipped)     {corpus.skipped_fuzzy}",
        f"untranslated        {corpus.untranslated}",
        f"pairs (deduplicated) {len(corpus.pairs)}",
        f"  duplicates merged {corpus.duplicates}",
        f"  conflicting keys  {corpus.conflicts} (most frequent translation wins)",
        f"  dropped too long  {corpus.dropped_too_long}",
        f"train               {len(splits.train)}",
        f"pair split          {len(splits.pairs)} ({heldout_percent:g}% by msgid hash)",
        f"document split      {len(splits.documents)} in {len(splits.document_files)} catalogs "
        f"({document_percent:g}% by path hash)",
        f"fingerprint         {corpus.fingerprint()}",
    ]
    lines += [f"  {path}" for path in splits.document_files]
    lines += [f"problem: {p}" for p in corpus.problems]
    return lines
