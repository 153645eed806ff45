"""Filling many catalogs through one backend: batches, requests in flight, checkpoints.

Files are opened one after another (lock, read, choose entries) and their entries go
out in batches of up to ``batch_size`` texts, ``jobs`` requests at a time, so the
service stays busy across file boundaries. A file is written once all its entries are
answered, and every ``checkpoint_every`` answered entries before that; each write is
atomic. A fatal backend error or an interruption stops the run: what was answered is
written, the rest stays untranslated for the next run.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from clients.backends import (
    Backend,
    BackendUnavailable,
    BackendUsageError,
    BatchFailed,
    BatchRejected,
    ServiceBusy,
)
from clients.filesafe import (
    CatalogLock,
    ChangedOnDiskError,
    LockedError,
    remove_stale_temporaries,
)
from clients.filling import Catalog, CatalogError, Unit, clean_output, load_catalog
from clients.writer import write_catalog
from core.markup import check_translation, update_problems
from service.schemas import MAX_BATCH, MAX_TEXT_CHARS, TranslateItem, Translation


@dataclass(frozen=True)
class Options:
    include_fuzzy: bool = False
    update_fuzzy: bool = True  # update fuzzy entries that have a previous msgid
    fuzzy: bool = True  # mark machine translations "#, fuzzy"
    on_invalid: str = "fuzzy"  # "fuzzy" | "skip": translations with markup warnings
    min_confidence: float | None = None  # drafts below it are left untranslated
    jobs: int = 4  # requests in flight
    batch_size: int = MAX_BATCH  # texts per request
    checkpoint_every: int = 200  # answered entries between intermediate writes; 0: none
    progress: bool = True
    show: int = 0  # keep this many filled entries per file for the report
    retries: int = 8  # per request answered 503 while none of ours is in flight


@dataclass
class FileResult:
    path: Path
    filled: int = 0  # entries written (flagged ones included)
    from_memory: int = 0  # of those, answered by the adapter's translation memory
    flagged: int = 0  # written as fuzzy with a note naming a problem
    skipped: int = 0  # left untranslated on purpose (too long, --on-invalid skip)
    failed: int = 0  # no usable answer (service error, empty output)
    updated: int = 0  # of the filled ones, fuzzy entries updated from their previous translation
    kept: int = 0  # fuzzy entries left as they were (the edit failed a check, or none was needed)
    left: int = 0  # not done: the run stopped first
    error: str | None = None  # the file as a whole could not be done
    reasons: list[str] = field(default_factory=list)
    examples: list[tuple[int, str, str, bool]] = field(default_factory=list)  # line, en, zh, fuzzy


class _File:
    def __init__(self, catalog: Catalog, units: list[Unit], lock: CatalogLock) -> None:
        self.catalog = catalog
        self.units = units
        self.lock = lock
        self.answered = 0
        self.since_write = 0
        self.all_queued = False
        self.closed = False
        self.error: str | None = None


class Runner:
    def __init__(
        self, backend: Backend, options: Options, read: dict[Path, Catalog] | None = None
    ) -> None:
        """``read``: catalogs ``survey`` already read; one is used as is when its file
        is unchanged once locked, instead of being read and parsed again."""
        self.backend = backend
        self.options = options
        self._read = read if read is not None else {}
        self.results: list[FileResult] = []
        self.fatal: str | None = None
        self._open: list[_File] = []
        self._bar: tqdm | None = None
        self.max_items = options.batch_size  # lowered when the service says batches are too big

    # ---- the run ----
    async def run(self, paths: list[Path], total: int) -> list[FileResult]:
        self._bar = tqdm(
            total=total,
            unit="entry",
            desc="translating",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not self.options.progress,
        )
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.options.jobs * 2)
        self._slots = _Pacer(self.options.jobs)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.options.jobs)]
        try:
            await self._produce(paths, queue)
            await asyncio.gather(*workers)
        finally:
            # normal end, fatal error or Ctrl-C (CancelledError): save what was answered
            for task in workers:
                task.cancel()
            for job in list(self._open):
                self._close(job)
            self._bar.close()
        return self.results

    async def _produce(self, paths: list[Path], queue: asyncio.Queue) -> None:
        for index, path in enumerate(paths):
            if self.fatal:
                for rest in paths[index:]:
                    self.results.append(FileResult(rest, error=f"not started: {self.fatal}"))
                break
            job = self._open_file(path)
            if job is None:
                continue
            batch: list[Unit] = []
            for unit in (u for u in job.units if u.status == "pending"):
                # sized as the service allows by now (self.max_items may have dropped)
                if batch and sum(len(u.texts) for u in batch) + len(unit.texts) > self.max_items:
                    await queue.put((job, batch))
                    batch = []
                batch.append(unit)
            if batch:
                await queue.put((job, batch))
            job.all_queued = True
            self._maybe_finish(job)
        for _ in range(self.options.jobs):
            await queue.put(None)

    def _open_file(self, path: Path) -> _File | None:
        lock = CatalogLock(path)
        try:
            lock.acquire()
        except (LockedError, OSError) as exc:
            self.results.append(FileResult(path, error=f"skipped: {exc}"))
            self._note(f"{path}: skipped: {exc}")
            return None
        try:
            remove_stale_temporaries(path)
            catalog = self._read.pop(path, None)
            if catalog is None or not catalog.fingerprint.still_matches(path):
                catalog = load_catalog(path)
        except (CatalogError, OSError) as exc:
            lock.release()
            self.results.append(FileResult(path, error=str(exc)))
            self._note(str(exc))
            return None
        units = catalog.units(
            include_fuzzy=self.options.include_fuzzy, update_fuzzy=self.options.update_fuzzy
        )
        for unit in units:
            longest = max(len(t) for t in unit.texts)
            if longest > MAX_TEXT_CHARS:
                unit.status = "skipped"
                unit.reason = f"{longest} characters, over the service's limit of {MAX_TEXT_CHARS}"
        job = _File(catalog, units, lock)
        job.answered = sum(u.status != "pending" for u in units)
        if self._bar is not None:
            self._bar.update(job.answered)
        self._open.append(job)
        return job

    async def _worker(self, queue: asyncio.Queue) -> None:
        while (work := await queue.get()) is not None:
            job, units = work
            if self.fatal or job.closed:
                continue
            parts = _batches(units, self.max_items)
            await asyncio.gather(*(self._translate(job, part) for part in parts))
            if job.closed:
                continue
            if self.options.checkpoint_every and job.since_write >= self.options.checkpoint_every:
                self._write(job)
            self._maybe_finish(job)

    async def _translate(self, job: _File, units: list[Unit]) -> None:
        try:
            await self._translate_part(job, units)
        except Exception as exc:  # an unforeseen error fails these entries, not the run
            pending = [u for u in units if u.status == "pending"]
            self._resolve(job, pending, "failed", f"unexpected {type(exc).__name__}: {exc}")

    async def _translate_part(self, job: _File, units: list[Unit]) -> None:
        items = [_item(u, t) for u in units for t in u.texts]
        try:
            answers = await self._send(items)
        except BatchRejected as exc:
            if len(units) > 1:
                if exc.param == "items":  # the batch is too big for this service
                    limit = re.search(r"limit of (\d+)", str(exc))
                    cap = int(limit.group(1)) if limit else len(items) // 2
                    self.max_items = max(1, min(self.max_items, cap, len(items) - 1))
                    parts = _batches(units, self.max_items)
                else:  # find the entry at fault by halving
                    parts = [units[: len(units) // 2], units[len(units) // 2 :]]
                await asyncio.gather(*(self._translate(job, part) for part in parts))
                return
            self._resolve(job, units, "failed", str(exc))
            return
        except BatchFailed as exc:
            self._resolve(job, units, "failed", str(exc))
            return
        except (BackendUnavailable, BackendUsageError) as exc:
            if not self.fatal:
                self.fatal = str(exc)
                self._note(f"stopping: {exc}")
            return
        if job.closed:
            return
        offset = 0
        for unit in units:
            self._apply(job.catalog, unit, answers[offset : offset + len(unit.texts)])
            offset += len(unit.texts)
        self._count(job, units)

    async def _send(self, items: list[TranslateItem]) -> list[Translation]:
        """One request, paced: a 503 while other requests of ours are in flight means
        that we fill the service, so fewer go out at once and this one is retried without
        counting; a 503 with none of ours in flight counts against ``retries``."""
        attempts = 0
        while True:
            await self._slots.acquire()
            try:
                answers = await self.backend.translate(items)
            except ServiceBusy as busy:
                others = self._slots.active - 1
                if others:
                    self._slots.limit = max(1, min(self._slots.limit, others))
                else:
                    attempts += 1
                    if attempts > self.options.retries:
                        raise BatchFailed(f"gave up after {attempts} attempts: {busy}") from None
                wait = busy.retry_after
            else:
                self._slots.succeeded(self.options.jobs)
                return answers
            finally:
                await self._slots.release()
            await asyncio.sleep(wait)

    def _apply(self, catalog: Catalog, unit: Unit, answers: list[Translation]) -> None:
        outputs = [clean_output(src, a.text) for src, a in zip(unit.texts, answers, strict=True)]
        if not all(outputs):
            unit.status, unit.reason = "failed", "the service answered an empty translation"
            return
        if unit.previous is not None:
            self._apply_update(catalog, unit, outputs[0], answers[0])
            return
        warnings: list[str] = []
        for src, answer, out in zip(unit.texts, answers, outputs, strict=True):
            warnings += answer.warnings + check_translation(src, out)
        warnings = list(dict.fromkeys(warnings))
        unit.from_memory = all(a.from_memory for a in answers)
        if warnings and self.options.on_invalid == "skip":
            unit.status, unit.reason = "skipped", "; ".join(warnings)
            return
        # an entry's confidence is its least sure form's; none from an older service
        scores = [a.confidence for a in answers]
        if not unit.from_memory and None not in scores:
            unit.confidence = min(s for s in scores if s is not None)
        low = self.options.min_confidence
        if low is not None and unit.confidence is not None and unit.confidence < low:
            unit.status = "skipped"
            unit.reason = f"confidence {unit.confidence:.2f} below --min-confidence {low:g}"
            return
        if low is not None and unit.confidence is None and not unit.from_memory:
            # a service with POLINGO_CONFIDENCE off (or an older one): nothing to judge by
            unit.status = "skipped"
            unit.reason = "the service gave no confidence to judge by --min-confidence"
            return
        # memory answers are the project's own reviewed translations of this very source
        fuzzy = self.options.fuzzy and not unit.from_memory
        catalog.fill(unit, outputs, fuzzy=fuzzy, notes=warnings)
        unit.status = "flagged" if warnings else "filled"

    def _apply_update(self, catalog: Catalog, unit: Unit, output: str, answer: Translation) -> None:
        """An update is written only when it changes the translation and passes the
        markup and lint checks at least as well as the previous translation did; else the
        entry stays exactly as it was (status "kept")."""
        old = unit.previous[1] if unit.previous else ""
        source = unit.texts[0]
        if output == old:
            unit.status, unit.reason = "kept", "the previous translation needs no change"
            return
        problems = update_problems(source, old, output, answer.warnings)
        if problems:
            unit.status, unit.reason = "kept", "; ".join(problems)
            return
        unit.confidence = answer.confidence
        catalog.fill(unit, [output], fuzzy=True, notes=[])
        unit.status = "filled"

    def _resolve(self, job: _File, units: list[Unit], status: str, reason: str) -> None:
        for unit in units:
            unit.status, unit.reason = status, reason
        self._count(job, units)

    def _count(self, job: _File, units: list[Unit]) -> None:
        job.answered += len(units)
        job.since_write += len(units)
        if self._bar is not None:
            self._bar.update(len(units))

    # ---- writing ----
    def _maybe_finish(self, job: _File) -> None:
        if job.all_queued and job.answered >= len(job.units) and not job.closed:
            self._close(job)

    def _write(self, job: _File, *, final: bool = False) -> None:
        job.since_write = 0
        if job.error or not any(u.status in ("filled", "flagged") for u in job.units):
            return
        catalog = job.catalog
        try:
            text = write_catalog(catalog, job.units, on_invalid=self.options.on_invalid)
        except (ChangedOnDiskError, CatalogError, OSError) as exc:
            job.error = str(exc)
            job.closed = True  # ignore its later answers; run() releases it at the end
            self._note(str(exc))
            return
        if final:  # report the entries' lines in the file as written
            parsed = catalog.parsed(text)
            lines = {(e.msgctxt, e.msgid): e.linenum for e in parsed if not e.obsolete}
            for unit in job.units:
                unit.entry.linenum = lines.get(unit.key, unit.entry.linenum)

    def _note(self, message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    def _close(self, job: _File) -> None:
        job.closed = True
        try:
            self._write(job, final=True)
        finally:
            job.lock.release()
            self._open.remove(job)
        self.results.append(_summary(job, self.options.show))


class _Pacer:
    """At most ``limit`` requests in flight; the limit drops when the service is full
    and climbs back by one after ``limit`` answers in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._streak = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < self.limit)
            self.active += 1

    async def release(self) -> None:
        async with self._changed:
            self.active -= 1
            self._changed.notify_all()

    def succeeded(self, most: int) -> None:
        self._streak += 1
        if self._streak >= self.limit and self.limit < most:
            self.limit += 1
            self._streak = 0


def _summary(job: _File, show: int) -> FileResult:
    result = FileResult(job.catalog.path, error=job.error)
    if job.error:  # nothing of this run reached the file (or only a checkpoint did)
        result.left = sum(u.status != "skipped" for u in job.units)
        return result
    for unit in job.units:
        result.kept += unit.status == "kept"
        result.updated += unit.status == "filled" and unit.previous is not None
        if unit.status in ("filled", "flagged"):
            if len(result.examples) < show:
                entry = unit.entry
                text = entry.msgstr_plural[min(unit.forms)] if unit.forms else entry.msgstr
                result.examples.append((unit.line, unit.texts[0], text, "fuzzy" in entry.flags))
            result.filled += 1
            result.from_memory += unit.from_memory
            result.flagged += unit.status == "flagged"
        elif unit.status == "kept":
            pass
        elif unit.status == "skipped":
            result.skipped += 1
        elif unit.status == "failed":
            result.failed += 1
        else:
            result.left += 1
        needed = unit.status in ("skipped", "failed") or (
            unit.status == "kept" and "needs no change" not in unit.reason
        )
        if needed and unit.reason:
            result.reasons.append(f"{job.catalog.path}:{unit.line}: {unit.status}: {unit.reason}")
    return result


def _item(unit: Unit, text: str) -> TranslateItem:
    if unit.previous is None:
        return TranslateItem(text=text, msgctxt=unit.entry.msgctxt)
    previous_text, previous_translation = unit.previous
    return TranslateItem(text, unit.entry.msgctxt, previous_text, previous_translation)


def _batches(units: list[Unit], size: int) -> list[list[Unit]]:
    """Consecutive units whose texts add up to at most ``size`` (a unit is never split)."""
    batches: list[list[Unit]] = []
    current: list[Unit] = []
    count = 0
    for unit in units:
        if current and count + len(unit.texts) > size:
            batches.append(current)
            current, count = [], 0
        current.append(unit)
        count += len(unit.texts)
    if current:
        batches.append(current)
    return batches


def survey(
    paths: list[Path],
    *,
    include_fuzzy: bool,
    update_fuzzy: bool = True,
    writable: bool = True,
    show: Callable[[Catalog, list[Unit]], None] | None = None,
    keep: dict[Path, Catalog] | None = None,
) -> tuple[dict[Path, int], list[str]]:
    """Read every catalog once before any request: (entries to fill per file, errors).
    ``keep``: filled with the catalogs that have entries to fill, for ``Runner``."""
    counts: dict[Path, int] = {}
    errors: list[str] = []
    for path in paths:
        try:
            catalog = load_catalog(path)
        except CatalogError as exc:
            errors.append(str(exc))
            continue
        if writable and not os.access(path.parent, os.W_OK | os.X_OK):
            errors.append(f"{path}: cannot write in {path.parent}")
            continue
        units = catalog.units(include_fuzzy=include_fuzzy, update_fuzzy=update_fuzzy)
        counts[path] = len(units)
        if keep is not None and units:
            keep[path] = catalog
        if show is not None:
            show(catalog, units)
    return counts, errors
