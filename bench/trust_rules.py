"""The rules of issue 39 on the shipped adapter's held-out predictions, and on the
corpus's human translations (they must not be flagged). CPU only, seconds.

    python bench/trust_rules.py [--predictions PATH] [--corpus DOCS_DIR ...]

``--predictions``: an eval report's predictions.jsonl (default: the shipped v3's).

Code (core/code.py): code entries of the held-out predictions whose code (lines without
their comments) differs from the source, before and after ``keep_code``; with
``--corpus``, the human translations of code entries that ``keep_code`` would change.

Simplified characters (core/chinese.py): outputs whose prose has simplified characters
(per character, as before) or simplified phrases (那么), before and after the post-edit's
conversion; with ``--corpus``, the human translations either rule flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.chinese import (  # noqa: E402
    simplified_characters,
    simplified_phrases,
    simplified_usage,
)
from core.code import code_kind, code_lines, keep_code  # noqa: E402
from core.markup import prose  # noqa: E402
from core.postedit import convert_simplified  # noqa: E402
from training.evaluate import predictions_by_split  # noqa: E402

PREDICTIONS = REPO / "core/default_adapter/zh-tw/v3/report/predictions.jsonl"


def code_figures(rows: list[dict]) -> dict:
    def altered(source: str, text: str) -> bool:
        kind = code_kind(source)
        return code_lines(text, kind) != code_lines(source, kind)

    code = [r for r in rows if code_kind(r["msgid"])]
    drafts = [r["output"] for r in code]
    fixed = [keep_code(r["msgid"], r["output"])[0] for r in code]
    return {
        "predictions": len(rows),
        "references equal to their source": sum(r["reference"] == r["msgid"] for r in rows),
        "code entries": len(code),
        "code altered outside comments, before": sum(
            altered(r["msgid"], t) for r, t in zip(code, drafts, strict=True)
        ),
        "code altered outside comments, after": sum(
            altered(r["msgid"], t) for r, t in zip(code, fixed, strict=True)
        ),
        "code drafts equal to the reference, before": sum(
            t == r["reference"] for r, t in zip(code, drafts, strict=True)
        ),
        "code drafts equal to the reference, after": sum(
            t == r["reference"] for r, t in zip(code, fixed, strict=True)
        ),
    }


def chinese_figures(rows: list[dict]) -> dict:
    outputs = [r["output"] for r in rows]
    converted = [convert_simplified(o) for o in outputs]
    return {
        "outputs with simplified characters (per character)": sum(
            bool(simplified_characters(prose(o))) for o in outputs
        ),
        "outputs with simplified phrases": [
            p for o in outputs for p in simplified_phrases(prose(o))
        ],
        "outputs with either, after conversion": sum(
            bool(simplified_usage(prose(o))) for o in converted
        ),
        "references flagged": sum(bool(simplified_usage(prose(r["reference"]))) for r in rows),
    }


def corpus_chinese_figures(pairs: list[tuple[str, int, str, str]]) -> dict:
    return {
        "flagged by simplified phrases": [
            f"{p[0]}:{p[1]}" for p in pairs if simplified_phrases(prose(p[3]))
        ],
        "flagged by simplified characters": len(
            [p for p in pairs if simplified_characters(prose(p[3]))]
        ),
    }


def corpus_pairs(folder: Path) -> list[tuple[str, int, str, str]]:
    import polib

    from core.catalogs import find_catalogs

    pairs = []
    for path in find_catalogs([folder])[0]:
        for e in polib.pofile(str(path)):
            if e.obsolete or e.fuzzy or not e.msgstr or e.msgid_plural:
                continue
            pairs.append((str(path.relative_to(folder)), e.linenum, e.msgid, e.msgstr))
    return pairs


def corpus_code_figures(pairs: list[tuple[str, int, str, str]]) -> dict:
    code = [p for p in pairs if code_kind(p[2])]
    reverted = [p for p in code if keep_code(p[2], p[3])[0] != p[3]]
    return {
        "translated entries": len(pairs),
        "code entries": len(code),
        "equal to their source": sum(p[2] == p[3] for p in code),
        "differing only in comments": len(code) - len(reverted) - sum(p[2] == p[3] for p in code),
        "would be reverted": [f"{p[0]}:{p[1]}" for p in reverted],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, default=PREDICTIONS)
    parser.add_argument("--corpus", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    report: dict = {  # a report holds both held-out splits: each one on its own
        f"held-out predictions, {split} split ({args.predictions})": {
            "code": code_figures(rows),
            "chinese": chinese_figures(rows),
        }
        for split, rows in sorted(predictions_by_split(args.predictions).items())
    }
    for folder in args.corpus:
        pairs = corpus_pairs(folder)
        report[str(folder)] = {
            "code": corpus_code_figures(pairs),
            "chinese": corpus_chinese_figures(pairs),
        }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
