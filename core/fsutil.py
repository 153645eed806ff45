"""Filesystem helpers shared by the registry, the model cache and translate-po (standard
library only, so the GPU side can import base_models without the service's dependencies)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".polingo-tmp"  # what a killed writer leaves; translate-po removes those


def make_readable(folder: Path) -> None:
    """mkdtemp (and safetensors) create private files; a registry or model cache is
    shared with processes that may run as other users."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def atomic_write(
    path: Path, data: bytes, *, before_replace: Callable[[], None] | None = None
) -> Path:
    """Write ``path`` so that a reader, or a process killed at any instant, sees the old
    content or the new, never half: a fsynced temporary file in the same folder (named
    ``.NAME.*`` + TMP_SUFFIX) with the file's permission bits (0644 for a new file),
    ``before_replace()`` (which may raise to keep the old file), rename, fsync of the
    folder. A symlink's target is replaced, not the link; returns that path."""
    path = path.resolve()
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path
