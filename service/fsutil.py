"""Filesystem helpers shared by the registry and the model cache (standard library only,
so the GPU side can import base_models without the service's dependencies)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_readable(folder: Path) -> None:
    """mkdtemp (and safetensors) create private files; a registry or model cache is
    shared with processes that may run as other users."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that a reader sees the old content or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
