"""Training pairs from a tree of gettext catalogs.

Rules (the same for every train, eval and retrain):
- a pair is a translated entry: not obsolete, not fuzzy, not the header, non-empty
  msgstr (for plural entries: msgid -> msgstr[0], msgid_plural -> msgstr[1] when
  the catalog has it);
- pairs are keyed by (msgctxt, msgid); when one key has several translations the
  most frequent wins, ties going to the first in sorted file order;
- the held-out split is decided by a hash of the msgid alone, so a msgid never
  trains in one retrain and evaluates in another, whatever the file order or seed;
- pairs longer than ``max_chars`` (source or translation) are dropped and counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polib

HELDOUT_PERCENT_DEFAULT = 3.0
MAX_CHARS_DEFAULT = 2000


class CatalogError(Exception):
    """A catalog that cannot be read; the message names the file (and line)."""


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

    def split(
        self, heldout_percent: float = HELDOUT_PERCENT_DEFAULT
    ) -> tuple[list[Pair], list[Pair]]:
        """(train, heldout), stable across retrains."""
        train, heldout = [], []
        for pair in self.pairs:
            (heldout if is_heldout(pair.msgid, heldout_percent) else train).append(pair)
        return train, heldout

    def fingerprint(self) -> str:
        return fingerprint(self.pairs)


def is_heldout(msgid: str, percent: float = HELDOUT_PERCENT_DEFAULT) -> bool:
    bucket = int.from_bytes(hashlib.sha256(msgid.encode("utf-8")).digest()[:4], "big") % 10_000
    return bucket < percent * 100


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


def read_catalog(path: Path) -> polib.POFile:
    """Parse one catalog; any failure becomes a CatalogError naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise CatalogError(f"{path}: not a text catalog (contains NUL bytes)")
    _msgfmt_check(path)
    try:
        return polib.pofile(str(path), wrapwidth=79)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogError(
            f"{path}:{line}: not valid in the catalog's charset ({exc.reason})"
        ) from None
    except (OSError, ValueError) as exc:
        message = str(exc)
        match = re.search(r"line (\d+)", message)
        where = f"{path}:{match.group(1)}" if match else str(path)
        raise CatalogError(f"{where}: {message}") from None


def _msgfmt_check(path: Path) -> None:
    """polib accepts some broken syntax silently (``msgstr oops`` reads as "op"), so
    gettext's own parser checks the file first where it is installed."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        return
    done = subprocess.run(
        [msgfmt, "--check-format", "-o", os.devnull, str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if line.strip()), "msgfmt failed")
        where = first.split(": ", 1)[0] if first.startswith(str(path)) else str(path)
        reason = first[len(where) + 2 :] if first.startswith(str(path)) else first
        raise CatalogError(f"{where}: {reason.strip()}")


def entry_pairs(entry: polib.POEntry) -> list[Pair]:
    """The training pairs of one entry (none unless it is a finished translation)."""
    if entry.obsolete or "fuzzy" in entry.flags or not entry.msgid:
        return []
    ctxt = entry.msgctxt or None
    if entry.msgid_plural:
        forms = entry.msgstr_plural
        out = []
        if forms.get(0, "").strip():
            out.append(Pair(entry.msgid, forms[0], ctxt))
        if forms.get(1, "").strip():
            out.append(Pair(entry.msgid_plural, forms[1], ctxt))
        return out
    return [Pair(entry.msgid, entry.msgstr, ctxt)] if entry.msgstr.strip() else []


def find_catalogs(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CatalogError(f"{root}: no such file or directory")
    return sorted(p for p in root.rglob("*.po") if p.is_file())


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
    for path in find_catalogs(root):
        try:
            catalog = read_catalog(path)
        except CatalogError as exc:
            if strict:
                raise
            corpus.problems.append(str(exc))
            continue
        corpus.files += 1
        for entry in catalog:
            if entry.obsolete or not entry.msgid:
                continue
            corpus.entries += 1
            if "fuzzy" in entry.flags:
                corpus.skipped_fuzzy += 1
                continue
            pairs = entry_pairs(entry)
            if not pairs:
                corpus.untranslated += 1
            for pair in pairs:
                seen[pair.key][pair.msgstr] += 1
                first.setdefault((pair.key, pair.msgstr), order)
                order += 1
                ids.setdefault(pair.key, (pair.msgid, pair.msgctxt))
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


def stats_lines(corpus: Corpus, heldout_percent: float = HELDOUT_PERCENT_DEFAULT) -> list[str]:
    train, heldout = corpus.split(heldout_percent)
    lines = [
        f"catalogs read       {corpus.files}",
        f"entries             {corpus.entries}",
        f"fuzzy (skipped)     {corpus.skipped_fuzzy}",
        f"untranslated        {corpus.untranslated}",
        f"pairs (deduplicated) {len(corpus.pairs)}",
        f"  duplicates merged {corpus.duplicates}",
        f"  conflicting keys  {corpus.conflicts} (most frequent translation wins)",
        f"  dropped too long  {corpus.dropped_too_long}",
        f"train / held-out    {len(train)} / {len(heldout)} ({heldout_percent:g}% by msgid hash)",
        f"fingerprint         {corpus.fingerprint()}",
    ]
    lines += [f"problem: {p}" for p in corpus.problems]
    return lines
