"""Never lose work: per-catalog lock files, change detection and atomic replacement.

A catalog is only ever replaced by ``os.replace`` of a fully written, fsynced temporary
file in the same folder, so a reader (or a run killed at any instant) sees either the
old file or the new one. ``FILE.po.lock`` serialises runs on one catalog.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

TMP_SUFFIX = ".polingo-tmp"


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
    """Exclusive, non-blocking ``flock`` on ``FILE.po.lock``; the lock file is removed on
    release. A second run gets ``LockedError`` at once instead of waiting."""

    def __init__(self, path: Path) -> None:
        self.path = lock_path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f" (pid {holder})" if holder else ""
                    raise LockedError(
                        f"another translate-po run{who} is working on it ({self.path} is locked)"
                    ) from None
                raise
            # The previous holder may have unlinked the file between our open and flock:
            # then we hold a lock nobody else sees, so start over on the new file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CatalogLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
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
    """Replace ``path`` with ``data`` unless it no longer matches ``expected``.

    Temporary file in the same folder, fsync, same permission bits, rename, fsync of the
    folder. Returns the new file's fingerprint.
    """
    path = path.resolve()  # replace a symlink's target, not the link
    mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if not expected.still_matches(path):
            raise ChangedOnDiskError(
                f"{path} changed on disk while it was being translated; it was not overwritten "
                "(rerun to translate the new version)"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return Fingerprint.of(path, data)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
