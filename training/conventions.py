"""python -m training.conventions DOCS [OUT]: derive the zh-TW conventions (mainland
phrases and the project's own wording, core/chinese.py) from a tree of translated
catalogs into the JSON file that the service and evaluation read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polib

from core.chinese import DEFAULT_CONVENTIONS, derive_conventions, write_conventions
from core.markup import MARKUP_RE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.conventions", description=__doc__)
    parser.add_argument("docs", type=Path, help="folder of translated .po catalogs")
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT_CONVENTIONS)
    args = parser.parse_args(argv)
    references = [
        MARKUP_RE.sub(" ", entry.msgstr)
        for path in sorted(args.docs.rglob("*.po"))
        for entry in polib.pofile(str(path))
        if entry.msgstr and not entry.obsolete and "fuzzy" not in entry.flags
    ]
    conventions = derive_conventions(references)
    write_conventions(args.out, conventions)
    print(f"{args.out}: {len(conventions)} conventions from {len(references)} references")
    return 0


if __name__ == "__main__":
    sys.exit(main())
