"""The review log: one JSON object a line per decision taken on the review page.

It lives beside the adapter registry (``REGISTRY/../review-log.jsonl`` by default) and
is only ever appended to, under ``review-log.jsonl.lock``, one fsynced line per
decision, so two review servers (or tabs) never interleave half lines. ``polingo
retrain --review-log`` trains on the kept and corrected translations, ``polingo eval
--review-log`` reports the share of drafts kept unchanged.

This module needs neither clients/ nor the web app: training/ reads logs through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import filelock
import msgspec

# restored: an updated entry's previous translation kept instead of the draft
Decision = Literal["accepted", "edited", "rejected", "restored"]
LOG_NAME = "review-log.jsonl"


class ReviewRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One decision. ``source``/``draft``/``final`` are the msgid, the machine draft and
    the text the translator left (empty after a reject); for a plural entry, form 0's,
    with every form in ``forms`` as [source, draft, final]."""

    time: str
    file: str
    msgctxt: str | None
    source: str
    draft: str
    final: str
    decision: Decision
    forms: list[tuple[str, str, str]] = []


def default_log_path(registry: Path) -> Path:
    """``review-log.jsonl`` in the folder that holds the registry (var/ for var/registry)."""
    return registry.resolve().parent / LOG_NAME


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_encoder = msgspec.json.Encoder()


def append(path: Path, records: Iterable[ReviewRecord]) -> None:
    """Append ``records`` durably; the lock makes each write whole even with several
    writers (filelock's flock, blocking for at most 10 s)."""
    with appender(path) as write:
        write(records)


@contextmanager
def appender(path: Path) -> Iterator[Callable[[Iterable[ReviewRecord]], None]]:
    """The log opened for appending, its lock held: open it before making the change
    that it records, so that a log that cannot be written (OSError here) stops the
    change. The yielded function appends records whole or not at all (OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{path}.lock", timeout=10):
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        written = False

        def write(records: Iterable[ReviewRecord]) -> None:
            nonlocal written
            data = b"".join(_encoder.encode(r) + b"\n" for r in records)
            if not data:
                return
            size = os.fstat(fd).st_size
            try:
                os.write(fd, data)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half line (a full disk)
                raise
            written = True

        try:
            yield write
        finally:
            os.close(fd)
            if created and not written:  # nothing decided: no empty log left behind
                path.unlink(missing_ok=True)


def read(path: Path) -> Iterator[ReviewRecord]:
    """The records of a log; a bad line raises ValueError naming the file and line."""
    decoder = msgspec.json.Decoder(ReviewRecord)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the review log: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{number}: bad review record ({exc})") from None


def training_pairs(records: Iterable[ReviewRecord]) -> list[tuple[str, str, str | None]]:
    """(source, translation, msgctxt) of every accepted or edited text, the latest
    decision on a (msgctxt, source) winning; rejected drafts give none."""
    latest: dict[tuple[str | None, str], str] = {}
    for record in records:
        forms = record.forms or [(record.source, record.draft, record.final)]
        for source, _, final in forms:
            key = (record.msgctxt, source)
            if record.decision == "rejected" or not final.strip():
                latest.pop(key, None)
            else:
                latest[key] = final
    return [(source, final, ctxt) for (ctxt, source), final in latest.items()]


def kept_share(records: Iterable[ReviewRecord]) -> dict[str, float]:
    """How often translators kept the drafts: decisions by kind and the share accepted
    unchanged (``kept_share``; 0 decisions: no share)."""
    counts = {"accepted": 0, "edited": 0, "rejected": 0, "restored": 0}
    for record in records:
        counts[record.decision] += 1
    total = sum(counts.values())
    out: dict[str, float] = {f"review_{k}": float(v) for k, v in counts.items()}
    out["review_decisions"] = float(total)
    if total:
        out["kept_share"] = round(counts["accepted"] / total, 4)
    return out
