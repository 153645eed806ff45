"""The .po rules that training (catalogs -> pairs) and translate-po (filling catalogs)
share: finding catalogs, reading and checking one, plural forms, and one error type.

Plural entries: ``msgstr[n]`` translates ``msgid`` for n = 0 where the language has
several forms, and ``msgid_plural`` otherwise. A language with one form (zh_TW:
``nplurals=1``) uses ``msgstr[0]`` for every count, so it translates ``msgid_plural``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import polib

DEFAULT_NPLURALS = 2  # gettext's, for a catalog without a Plural-Forms header
_NPLURALS_RE = re.compile(r"nplurals\s*=\s*(\d+)")


class CatalogError(Exception):
    """A catalog that cannot be read or written; the message names the file (and line)."""


def find_catalogs(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Files as given, folders searched recursively for ``*.po`` (hidden folders such as
    ``.git`` skipped), each file once. Returns (catalogs, one message per missing path)."""
    found: list[Path] = []
    errors: list[str] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*.po")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            errors.append(f"{path}: no such file or directory")
    unique = {p.resolve(): p for p in reversed(found)}  # first spelling of each file wins
    return list(reversed(unique.values())), errors


def read_checked(path: Path) -> bytes:
    """The bytes of a catalog that gettext's own parser accepts (``msgfmt --check``, where
    msgfmt is installed): polib reads some broken syntax silently (``msgstr oops`` as
    "op")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise CatalogError(f"{path}: not a text catalog (contains NUL bytes)")
    msgfmt_check(path)
    return data


def msgfmt_check(path: Path) -> None:
    """Raise CatalogError with msgfmt's first finding as ``FILE:LINE: reason``."""
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        return
    done = subprocess.run(
        [msgfmt, "--check", "-o", os.devnull, "--", str(path)],  # "--": a path may start with -
        capture_output=True,
        text=True,
        errors="replace",
    )
    if done.returncode == 0:
        return
    lines = [ln.removeprefix("msgfmt: ") for ln in done.stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("found ", " "))]
    errors = [ln for ln in lines if "warning: " not in ln]
    # a missing or broken header is fatal but msgfmt words it as a warning
    first = (errors or lines or ["msgfmt failed"])[0].replace("warning: ", "")
    if not first.startswith(f"{path}:"):
        first = f"{path}: {first}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise CatalogError(f"{first}{more} (msgfmt --check)")


def read_catalog(path: Path) -> polib.POFile:
    """Parse one catalog (any charset its header names) after ``read_checked``; any
    failure becomes a CatalogError naming the file and line."""
    data = read_checked(path)
    try:
        return polib.pofile(str(path), wrapwidth=79)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CatalogError(
            f"{path}:{line}: not valid in the catalog's charset ({exc.reason})"
        ) from None
    except (OSError, ValueError) as exc:
        message = str(exc)
        match = re.search(r"line (\d+)", message)
        where = f"{path}:{match.group(1)}" if match else str(path)
        raise CatalogError(f"{where}: {message}") from None


def nplurals(po: polib.POFile) -> int:
    """The number of plural forms the catalog's Plural-Forms header declares."""
    match = _NPLURALS_RE.search(po.metadata.get("Plural-Forms", ""))
    return int(match.group(1)) if match else DEFAULT_NPLURALS


def plural_source(entry: polib.POEntry, form: int, forms: int) -> str:
    """The source text that ``msgstr[form]`` of a plural entry translates, in a catalog
    with ``forms`` plural forms (see the module's docstring)."""
    return entry.msgid if form == 0 and forms > 1 else entry.msgid_plural
