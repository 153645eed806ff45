"""The review page's work: which entries need review, and applying a decision safely.

A decision is applied under the catalog's lock (``FILE.po.lock``, the one translate-po
holds while it works on a file) to a fresh read of the file, and only if the entry is
still at the version the translator saw (``rev``); the write is translate-po's own
(``clients.writer.write_catalog``: powrap format, msgfmt --check and sphinx-lint,
atomic replace unless the file changed meanwhile), refusing rather than altering a
text the tools reject. Then the decision is appended to the review log.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import polib

from clients.filesafe import CatalogLock, ChangedOnDiskError, LockedError, atomic_replace
from clients.filling import (
    Catalog,
    CatalogError,
    clean_output,
    load_catalog,
    previous_translation,
)
from clients.writer import InvalidCatalogText, write_catalog
from core.errors import ApiError, Conflict, InvalidRequest, NotFound
from review import log
from review.entries import (
    EntryView,
    MemoryContext,
    drafts,
    entry_id,
    entry_rev,
    forms_of,
    needs_review,
    view,
)
from review.schemas import DecisionRequest, DecisionResponse, FileSummary, Progress


class NotSaved(ApiError, status=500, type="not_saved"):
    """The decision could not be recorded (the review log cannot be written); the
    catalog was left as it was."""


@dataclass
class _File:
    path: Path
    seen: set[str] = field(default_factory=set)  # every eid that needed review
    skipped: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)  # in file order, from the last scan
    stamp: tuple[int, int, int] | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Reviewer:
    """The catalogs under review, shared by every request (and browser tab)."""

    def __init__(
        self, paths: list[Path], log_path: Path, memory: MemoryContext | None = None
    ) -> None:
        self.files = [_File(p) for p in paths]
        self.log_path = log_path
        self.memory = memory or MemoryContext.empty()
        self._scanning = threading.Lock()  # handlers run in threads
        for number in range(len(self.files)):
            self._scan(number)

    # ---- reading ----
    def _file(self, fid: int) -> _File:
        if not 0 <= fid < len(self.files):
            raise NotFound(f"no file number {fid}: there are {len(self.files)}")
        return self.files[fid]

    def _scan(self, fid: int) -> _File:
        """Refresh which entries need review, if the file changed (stat) since last time."""
        f = self.files[fid]
        with self._scanning:
            self._rescan(f)
        return f

    @staticmethod
    def _rescan(f: _File) -> None:
        try:
            info = os.stat(f.path)
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
            if stamp != f.stamp:
                po = polib.pofile(str(f.path), wrapwidth=0)
                f.pending = [entry_id(e) for e in po if needs_review(e)]
                f.seen.update(f.pending)
                f.stamp, f.error = stamp, None
        except (OSError, ValueError) as exc:
            f.stamp, f.pending, f.error = None, [], f"{f.path}: {exc}"

    def progress(self, fid: int) -> Progress:
        f = self._scan(fid)
        skipped = len(f.skipped.intersection(f.pending))
        return Progress(len(f.seen) - len(f.pending), len(f.seen), skipped)

    def overall(self) -> Progress:
        parts = [self.progress(i) for i in range(len(self.files))]
        return Progress(
            sum(p.done for p in parts), sum(p.total for p in parts), sum(p.skipped for p in parts)
        )

    def summaries(self) -> list[FileSummary]:
        return [
            FileSummary(fid=i, path=str(f.path), progress=self.progress(i), error=f.error)
            for i, f in enumerate(self.files)
        ]

    def next_file(self, after: int = -1) -> int | None:
        """The next file (after ``after``, wrapping around) with entries left to review,
        skipped ones not counted."""
        n = len(self.files)
        for step in range(1, n + 1):
            fid = (after + step) % n
            f = self._scan(fid)
            if any(e not in f.skipped for e in f.pending):
                return fid
        return None

    def entries(self, fid: int, *, by_confidence: bool = False) -> list[EntryView]:
        """The entries of file ``fid`` that need review, fully checked and annotated, in
        file order or ``by_confidence``: lowest first, those without one last."""
        f = self._file(fid)
        catalog = self._load(f.path)
        views = [view(e, catalog.nplurals) for e in catalog.po if needs_review(e)]
        if by_confidence:
            views.sort(key=lambda v: (v.confidence is None, v.confidence or 0.0))
        for v in views:
            v.skipped = v.eid in f.skipped
        self.memory.annotate(views)
        return views

    @staticmethod
    def _load(path: Path) -> Catalog:
        try:
            return load_catalog(path)
        except CatalogError as exc:
            raise InvalidRequest(str(exc)) from None

    # ---- deciding ----
    def decide(self, fid: int, eid: str, request: DecisionRequest) -> DecisionResponse:
        f = self._file(fid)
        if request.action == "skip":
            if eid not in self._scan(fid).pending:
                raise Conflict("this entry no longer needs review; reload the page")
            f.skipped.add(eid)
            return self._answer(fid, eid, "skipped", None)
        with f.lock:  # this server's tabs queue up; other processes meet the file lock
            lock = CatalogLock(f.path)
            try:
                lock.acquire()
            except LockedError as exc:
                raise Conflict(
                    f"{f.path.name} is being written by another program: {exc}; "
                    "try again when it has finished"
                ) from None
            except OSError as exc:
                raise NotSaved(f"not saved: cannot lock {f.path.name}: {exc}") from None
            try:
                record, entry = self._apply_logged(f.path, eid, request)
            finally:
                lock.release()
        f.skipped.discard(eid)
        return self._answer(fid, eid, record.decision, entry)

    def _apply_logged(
        self, path: Path, eid: str, request: DecisionRequest
    ) -> tuple[log.ReviewRecord, polib.POEntry]:
        """``_apply`` and its log record: both or neither. The log is opened first; if
        the record still cannot be written, the catalog is put back as it was."""
        unwritable = (
            f"not saved: the review log {self.log_path} cannot be written ({{}}); "
            "the catalog was left as it was: fix that (or restart with another "
            "--review-log) and decide again"
        )
        try:
            with log.appender(self.log_path) as append:
                before = path.read_bytes()
                record, entry, catalog = self._apply(path, eid, request)
                try:
                    append([record])
                except OSError as exc:
                    atomic_replace(path, before, catalog.fingerprint)
                    raise NotSaved(unwritable.format(exc)) from None
        except OSError as exc:  # the log's folder, file or lock
            raise NotSaved(unwritable.format(exc)) from None
        return record, entry

    def _apply(
        self, path: Path, eid: str, request: DecisionRequest
    ) -> tuple[log.ReviewRecord, polib.POEntry, Catalog]:
        catalog = self._load(path)
        entry = next((e for e in catalog.po if entry_id(e) == eid and not e.obsolete), None)
        if entry is None:
            raise Conflict("this entry is no longer in the file; reload the page")
        if entry_rev(entry) != request.rev:
            raise Conflict(
                "this entry changed since the page showed it (translate-po, another tab or "
                "an editor); it was not overwritten: reload to see the new version"
            )
        if not needs_review(entry):
            raise Conflict("this entry no longer needs review; reload the page")
        before = forms_of(entry, catalog.nplurals)
        kept = [f.draft for f in before]
        if request.action == "restore":
            old = previous_translation(entry)
            if old is None or entry.msgid_plural:
                raise InvalidRequest("restore: this entry has no previous translation")
            finals = [old]
        else:
            finals = self._finals(request, [f.source for f in before], kept)
        unit = catalog.unit_of(entry)
        catalog.fill(unit, finals, fuzzy=False, notes=[])
        unit.status = "filled"
        try:
            write_catalog(catalog, [unit], on_invalid="refuse")
        except InvalidCatalogText as exc:
            raise InvalidRequest(
                "not saved: the catalog's checks reject this translation; fix it and save again",
                exc.findings,
            ) from None
        except ChangedOnDiskError:
            raise Conflict(
                f"{path.name} changed on disk while saving; it was not overwritten: reload"
            ) from None
        except (CatalogError, OSError) as exc:
            raise InvalidRequest(f"not saved: {exc}") from None
        decision = {"accept": "accepted", "reject": "rejected", "restore": "restored"}.get(
            request.action, "edited"
        )
        if decision == "edited" and finals == kept:
            decision = "accepted"  # saved unchanged: the draft was kept
        forms = [(b.source, b.draft, t) for b, t in zip(before, finals, strict=True)]
        record = log.ReviewRecord(
            time=log.now(),
            file=str(path),
            msgctxt=entry.msgctxt,
            source=forms[0][0],
            draft=forms[0][1],
            final=forms[0][2],
            decision=decision,  # type: ignore[arg-type]
            forms=forms if entry.msgid_plural else [],
        )
        return record, entry, catalog

    @staticmethod
    def _finals(request: DecisionRequest, sources: list[str], current: list[str]) -> list[str]:
        if request.action == "accept":
            return list(current)
        if request.action == "reject":
            return ["" for _ in sources]
        texts = request.texts if isinstance(request.texts, list) else None
        if texts is None or len(texts) != len(sources):
            raise InvalidRequest(
                f"edit needs texts: one translation for each of {len(sources)} forms"
            )
        pairs = zip(sources, texts, strict=True)
        cleaned = [clean_output(s, t.replace("\r\n", "\n")) for s, t in pairs]
        if not all(t.strip() for t in cleaned):
            raise InvalidRequest("an edited translation is empty: reject the draft instead")
        return cleaned

    def _answer(
        self, fid: int, eid: str, decision: str, entry: polib.POEntry | None
    ) -> DecisionResponse:
        return DecisionResponse(
            eid=eid,
            decision=decision,
            texts=drafts(entry) if entry is not None else [],
            rev=entry_rev(entry) if entry is not None else "",
            file=self.progress(fid),
            overall=self.overall(),
            next_file=self.next_file(fid),
        )
