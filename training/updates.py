"""Update triples: an entry whose English source changed, with the translation it had
and the one a human then wrote, for the update mode of the prompt contract.

Mined from two catalog trees (an older and a newer state of one project) with the
recipe of python-docs-zh-tw's own sync: for each catalog in both trees,
``msgmerge --previous OLD.po NEW.po`` carries the old translations onto the new
sources; the entries it leaves fuzzy with a previous msgid (``#| msgid``) are updates,
kept where the NEW catalog has a human, non-fuzzy translation of the same entry.
Plural entries are left out. ``polingo data updates OLD NEW -o FILE`` writes them as
JSON lines (the fields of ``Update``), the format ``polingo train --updates`` reads.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import polib

from core.catalogs import CatalogError, find_catalogs
from core.fsutil import atomic_write

FIELDS = ("previous_msgid", "msgid", "old_msgstr", "msgstr")


@dataclass(frozen=True)
class Update:
    previous_msgid: str  # the source before the change
    msgid: str  # the source now
    old_msgstr: str  # the translation of previous_msgid
    msgstr: str  # the human translation of msgid
    msgctxt: str | None = None
    file: str = ""  # the catalog, relative to its tree
    span: str = ""  # which two states of the project it was mined from

    @property
    def unchanged(self) -> bool:
        """The human kept the old translation as it was."""
        return self.old_msgstr == self.msgstr


def merge_previous(old: Path, new: Path) -> list[polib.POEntry]:
    """The entries of ``msgmerge --previous OLD NEW`` (NEW's sources, OLD's translations)."""
    done = subprocess.run(
        ["msgmerge", "--previous", "--quiet", "--no-wrap", "-o", "-", str(old), str(new)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise CatalogError(f"msgmerge {old} {new}: {done.stderr.strip()[:300]}")
    return list(polib.pofile(done.stdout, wrapwidth=0))


def catalog_updates(old: Path, new: Path, file: str = "", span: str = "") -> list[Update]:
    """The update triples of one catalog in two states."""
    human = {
        (e.msgctxt, e.msgid): e.msgstr
        for e in polib.pofile(str(new), wrapwidth=0)
        if not e.obsolete and "fuzzy" not in e.flags and e.msgstr.strip() and not e.msgid_plural
    }
    found = []
    for entry in merge_previous(old, new):
        if entry.obsolete or entry.msgid_plural or "fuzzy" not in entry.flags:
            continue
        if not entry.previous_msgid or not entry.msgstr.strip():
            continue
        reference = human.get((entry.msgctxt, entry.msgid))
        if reference is None:
            continue
        found.append(
            Update(entry.previous_msgid, entry.msgid, entry.msgstr, reference, entry.msgctxt,
                   file, span)
        )  # fmt: skip
    return found


def mine_updates(
    old_tree: Path,
    new_tree: Path,
    *,
    span: str = "",
    on_file: Callable[[str, int], None] | None = None,
) -> list[Update]:
    """The update triples of every catalog present in both trees (relative paths),
    in sorted file order. ``on_file(path, n)``: progress."""
    old_tree, new_tree = Path(old_tree), Path(new_tree)
    for tree in (old_tree, new_tree):
        if not tree.is_dir():
            raise CatalogError(f"{tree}: not a folder of catalogs")
    old_paths, errors = find_catalogs([old_tree])
    if errors:
        raise CatalogError("; ".join(errors))
    span = span or f"{old_tree.name}-{new_tree.name}"
    found: list[Update] = []
    for old in sorted(old_paths):
        rel = old.relative_to(old_tree).as_posix()
        new = new_tree / rel
        if not new.is_file():
            continue
        rows = catalog_updates(old, new, rel, span)
        found += rows
        if on_file is not None:
            on_file(rel, len(rows))
    return found


def write_updates(path: Path, updates: Iterable[Update]) -> None:
    """JSON lines, written atomically."""
    text = "".join(json.dumps(asdict(u), ensure_ascii=False) + "\n" for u in updates)
    atomic_write(path, text.encode("utf-8"))


def load_updates(path: Path) -> list[Update]:
    """Update triples from a JSON-lines file, or every ``*.jsonl`` under a folder. A bad
    row raises ValueError naming the file, line and field."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if not files:
            raise ValueError(f"{path}: no *.jsonl file of update triples")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"{path}: no such file or folder of update triples")
    updates = []
    for file in files:
        with open(file, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    updates.append(_row(_decode(line, file, number), file, number))
    return updates


def _decode(line: str, file: Path, number: int) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}:{number}: not JSON ({exc.msg})") from None


def _row(row: object, file: Path, number: int) -> Update:
    where = f"{file}:{number}"
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not a JSON object")
    for name in FIELDS:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string")
    context = row.get("msgctxt")
    if context is not None and not isinstance(context, str):
        raise ValueError(f"{where}: field 'msgctxt' must be a string or null")
    return Update(
        row["previous_msgid"], row["msgid"], row["old_msgstr"], row["msgstr"], context or None,
        str(row.get("file", "")), str(row.get("span", "")),
    )  # fmt: skip


def updates_command(old_tree: Path, new_tree: Path, output: Path | None) -> int:
    """`polingo data updates OLD NEW [-o FILE]`: mine, write, say how many."""
    import sys

    def progress(rel: str, n: int) -> None:
        if n:
            print(f"{rel}: {n}", file=sys.stderr)

    found = mine_updates(old_tree, new_tree, on_file=progress)
    if output is None:
        for update in found:
            print(json.dumps(asdict(update), ensure_ascii=False))
        return 0
    write_updates(output, found)
    kept = sum(u.unchanged for u in found)
    print(f"{len(found)} update triples ({kept} kept unchanged by the humans) -> {output}")
    return 0
