"""Never lose work: per-catalog lock files, change detection and atomic replacement.

A catalog is only ever replaced by ``os.replace`` of a fully written, fsynced temporary
file in the same folder, so a reader (or a run killed at any instant) sees either the
old file or the new one. ``FILE.po.lock`` serialises runs on one catalog.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import filelock

from core.fsutil import TMP_SUFFIX, atomic_write


class LockedError(Exception):
    """Another run holds the catalog's lock."""


class ChangedOnDiskError(Exception):
    """The catalog changed since we read it; we did not overwrite it."""


@dataclass(frozen=True)
class Fingerprint:
    """What a file looked like when read: enough to tell that someone else rewrote it."""

    inode: int
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path, data: bytes | None = None) -> Fingerprint:
        info = os.stat(path)
        if data is None:
            data = path.read_bytes()
        return cls(info.st_ino, info.st_size, info.st_mtime_ns, hashlib.sha256(data).hexdigest())

    def still_matches(self, path: Path) -> bool:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return False
        if (info.st_ino, info.st_size, info.st_mtime_ns) == (self.inode, self.size, self.mtime_ns):
            return True
        # touched or copied over with the same bytes: still ours to replace
        return hashlib.sha256(path.read_bytes()).hexdigest() == self.sha256


def lock_path(path: Path) -> Path:
    path = path.resolve()  # a symlinked catalog is locked (and replaced) where it lives
    return path.with_name(path.name + ".lock")


class CatalogLock:
    """Exclusive, non-blocking lock (filelock's flock) on ``FILE.po.lock``, which holds the
    holder's pid and is removed on release, so the docs tree is left as it was. A second
    run gets ``LockedError`` at once instead of waiting."""

    def __init__(self, path: Path) -> None:
        self.path = lock_path(path)
        self._lock = filelock.FileLock(
            self.path,
            timeout=0,
            thread_local=False,
            fallback_to_soft=False,  # the unlink on release needs flock's semantics
            on_acquired=self._write_pid,
        )

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = _read_pid(self.path)
            who = f" (pid {holder})" if holder else ""
            raise LockedError(
                f"another translate-po run{who} is working on it ({self.path} is locked)"
            ) from None

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        try:
            # unlinked while held: a run that opened it meanwhile sees a dead inode and retries
            self.path.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def __enter__(self) -> CatalogLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _write_pid(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            # a full disk: filelock releases the lock on our error; remove the file we
            # created while we still hold it, so that no stray FILE.po.lock is left
            self.path.unlink(missing_ok=True)
            raise


def _read_pid(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()[:32]
    except OSError:
        return ""


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temporary files a killed run left next to ``path``; call with the lock held."""
    path = path.resolve()
    stale = list(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def atomic_replace(path: Path, data: bytes, expected: Fingerprint) -> Fingerprint:
    """Replace ``path`` with ``data`` (``core.fsutil.atomic_write``) unless it no longer
    matches ``expected``. Returns the new file's fingerprint."""

    def unchanged() -> None:
        if not expected.still_matches(path):
            raise ChangedOnDiskError(
                f"{path} changed on disk while it was being translated; it was not overwritten "
                "(rerun to translate the new version)"
            )

    return Fingerprint.of(atomic_write(path, data, before_replace=unchanged), data)
