"""The adapter registry: versioned LoRA adapters with their manifests, on disk.

Layout::

    REGISTRY/
      NAME/
        v1/   adapter_config.json  adapter_model.safetensors  manifest.json
              data_index.json  memory.jsonl  report/
        v2/   ...
        CURRENT          the promoted version's name, e.g. "v2"
        HISTORY.jsonl    one line per promotion or rollback

A version folder appears whole (written elsewhere, then renamed in), and CURRENT is
replaced atomically, so a reader never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from core.fsutil import atomic_write, make_readable
from core.prompt import PromptContract

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
HISTORY = "HISTORY.jsonl"
MEMORY = "memory.jsonl"  # translation memory: the training pairs, one JSON object a line
DATA_INDEX = "data_index.json"  # pair key hash -> translation hash, for retraining diffs

# fullmatch, not "$": "$" also matches before a final newline ("zh-tw\n")
_VERSION_RE = re.compile(r"v(\d+)")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RegistryError(Exception):
    """A registry operation that cannot be done (unknown adapter, bad name, ...)."""


class DataSummary(msgspec.Struct, kw_only=True):
    fingerprint: str
    source: str
    files: int = 0
    pairs: int = 0
    train_pairs: int = 0
    heldout_pairs: int = 0  # the pair split
    # the document split: None for a version trained before it (on every catalog)
    document_pairs: int | None = None
    document_files: list[str] | None = None
    dropped_too_long: int = 0
    extra_pairs: int = 0  # extra training text (TrainConfig.extra_data), not in the memory
    new_pairs: int | None = None  # against the parent version's data
    changed_pairs: int | None = None
    removed_pairs: int | None = None


class Manifest(msgspec.Struct, kw_only=True):
    """What a person or the service needs to know about one adapter version."""

    name: str
    version: str
    base_model: str
    contract: PromptContract
    data: DataSummary
    training: dict[str, object] = {}
    metrics: dict[str, float] = {}  # on the pair split
    baseline_metrics: dict[str, float] = {}
    document_metrics: dict[str, float] = {}  # on the document split (training/data.py)
    document_baseline_metrics: dict[str, float] = {}
    parent: str | None = None
    created_at: str = ""
    command: str = ""
    notes: str = ""


NAME_RULE = (
    "an adapter is NAME or NAME@vN: NAME is 1-64 letters, digits, '.', '_' or '-' "
    "starting with a letter or digit (no paths), N a number"
)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """'NAME' or 'NAME@VERSION' -> (name, version or None); RegistryError for anything
    else (paths, '..', bad versions), so that no caller can reach outside a registry."""
    name, at, version = ref.partition("@")
    if not _NAME_RE.fullmatch(name) or (at and not _VERSION_RE.fullmatch(version)):
        raise RegistryError(f"bad adapter {ref!r}: {NAME_RULE}")
    return name, version or None


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, name: str) -> Path:
        """ROOT/NAME, for a valid name whose folder resolves inside the root (a symlink
        pointing elsewhere is refused too)."""
        if not _NAME_RE.fullmatch(name):
            raise RegistryError(f"bad adapter name {name!r}: {NAME_RULE}")
        folder = self.root / name
        if folder.exists() and not folder.resolve().is_relative_to(self.root.resolve()):
            raise RegistryError(f"adapter {name!r} lies outside the registry {self.root}")
        return folder

    # ---- reading ----
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _NAME_RE.fullmatch(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        folder = self.folder(name)
        if not folder.is_dir():
            return []
        found = [
            p.name
            for p in folder.iterdir()
            if _VERSION_RE.fullmatch(p.name) and (p / MANIFEST).is_file()
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def current(self, name: str) -> str | None:
        """The version CURRENT names, or None where it is missing or names no version."""
        try:
            return self._pointed(name)
        except RegistryError:
            return None

    def _pointed(self, name: str) -> str:
        """The version CURRENT names; RegistryError saying what is wrong with it otherwise
        (missing, empty, not text, naming no version here)."""
        pointer = self.folder(name) / CURRENT
        try:
            version = pointer.read_bytes().decode("utf-8").strip()
        except FileNotFoundError:
            raise RegistryError(
                f"adapter {name!r} has no {CURRENT} file: promote a version "
                f"(polingo adapters promote {name}@vN)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{pointer}: unreadable ({exc})") from None
        versions = self.versions(name)
        if version not in versions:
            raise RegistryError(
                f"{pointer} names {version!r}, which is not a version of {name!r} "
                f"(has {', '.join(versions) or 'none'}): promote one"
            )
        return version

    def resolve(self, ref: str) -> tuple[str, str]:
        """'NAME[@VERSION]' -> (name, version); the version CURRENT names when none is
        named, never a version nobody promoted (RegistryError if CURRENT is broken)."""
        name, version = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            raise RegistryError(f"no adapter named {name!r} in registry {self.root}")
        if version is None:
            version = self._pointed(name)
        if version not in versions:
            raise RegistryError(
                f"adapter {name!r} has no version {version!r} (has {', '.join(versions)})"
            )
        return name, version

    def path(self, ref: str) -> Path:
        name, version = self.resolve(ref)
        path = self.folder(name) / version
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise RegistryError(f"adapter {name}@{version} lies outside the registry {self.root}")
        return path

    def manifest(self, ref: str) -> Manifest:
        return msgspec.json.decode((self.path(ref) / MANIFEST).read_bytes(), type=Manifest)

    # ---- writing ----
    def next_version(self, name: str) -> str:
        versions = self.versions(name)
        taken = [int(v[1:]) for v in versions]
        # also skip numbers of half-written versions, which a rerun must not reuse
        folder = self.folder(name)
        if folder.is_dir():
            taken += [
                int(m.group(1))
                for p in folder.iterdir()
                if (m := re.match(r"^\.tmp-v(\d+)-", p.name))
            ]
        return f"v{max(taken, default=0) + 1}"

    @contextmanager
    def new_version(self, name: str) -> Iterator[tuple[str, Path]]:
        """Yield (version, staging folder); the folder becomes NAME/VERSION only if
        the block finishes. A failed or interrupted block leaves the registry as it was."""
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        version = self.next_version(name)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=folder))
        try:
            yield version, staging
            if not (staging / MANIFEST).is_file():
                raise RegistryError(f"version {version} of {name!r} has no manifest")
            make_readable(staging)
            os.rename(staging, folder / version)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def write_manifest(self, folder: Path, manifest: Manifest) -> None:
        atomic_write(
            folder / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest), indent=2)
        )

    def update_manifest(self, ref: str, manifest: Manifest) -> None:
        self.write_manifest(self.path(ref), manifest)

    def promote(self, ref: str, reason: str = "") -> str:
        """Point CURRENT at ``ref``'s version; RegistryError (CURRENT untouched) if its
        manifest cannot be read: a version the service would refuse is never made current."""
        name, version = self.resolve(ref)
        try:
            self.manifest(f"{name}@{version}")
        except (OSError, ValueError) as exc:  # msgspec's errors are ValueErrors
            raise RegistryError(f"{name}@{version} cannot be promoted: {exc}") from None
        previous = self.current(name)
        atomic_write(self.folder(name) / CURRENT, (version + "\n").encode())
        entry = {
            "time": now(),
            "action": "promote",
            "version": version,
            "previous": previous,
            "reason": reason,
        }
        with open(self.folder(name) / HISTORY, "a", encoding="utf-8") as history:
            history.write(json.dumps(entry) + "\n")
        return version

    def rollback(self, name: str) -> str:
        """Make the version that was current before the current one current again, or,
        where that version's folder was removed, the one before it."""
        current = self.current(name)
        if current is None:
            raise RegistryError(f"adapter {name!r} has no current version to roll back from")
        before = {e["version"]: e.get("previous") for e in self.history(name) if "version" in e}
        present = set(self.versions(name))
        previous, seen = before.get(current), {current}
        while previous and previous not in present and previous not in seen:
            seen.add(previous)
            previous = before.get(previous)
        if not previous or previous in seen:
            raise RegistryError(f"adapter {name!r}: no earlier promoted version to roll back to")
        self.promote(f"{name}@{previous}", reason=f"rollback from {current}")
        return previous

    def history(self, name: str) -> list[dict]:
        path = self.folder(name) / HISTORY
        if not path.is_file():
            return []
        return [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
