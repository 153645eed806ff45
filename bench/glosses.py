"""English glosses (``函式 (function)``) in held-out references and drafts, and how much of
prose chrF they decide (issue 42). CPU only, seconds.

    python bench/glosses.py --predictions REPORT/predictions.jsonl [--corpus DOCS_DIR]

For each held-out split in the predictions: the references and drafts with a gloss, those
with one in both, prose chrF as eval reports it, and the same with the glosses removed from
references and drafts alike. With ``--corpus``, the share of a tree's prose translations
(msgstr differs from msgid) that carry a gloss.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.evaluate import predictions_by_split  # noqa: E402
from training.quality import chrf_prose  # noqa: E402

# An English parenthesis of 3 letters or more right after a Chinese character (half- or
# full-width brackets, one optional space): the corpus's way of keeping the English term.
GLOSS = re.compile(r"(?<=[\u4e00-\u9fff]) ?[（(][A-Za-z][A-Za-z \-]{2,}[)）]")


def split_figures(rows: list[dict]) -> dict:
    # prose is chosen on the original references: with the glosses removed, a reference
    # could newly differ from its source (or equal it) and move in or out of the set
    prose = [r for r in rows if r["reference"] != r["msgid"]]
    sources = [r["msgid"] for r in prose]
    references = [r["reference"] for r in prose]
    outputs = [r["output"] for r in prose]
    unmarked = ["\0"] * len(prose)  # never equal to a reference: every row counts as prose
    in_reference = [bool(GLOSS.search(t)) for t in references]
    in_output = [bool(GLOSS.search(t)) for t in outputs]
    return {
        "pairs": len(rows),
        "prose pairs": len(prose),
        "references with a gloss": sum(in_reference),
        "drafts with a gloss": sum(in_output),
        "both": sum(a and b for a, b in zip(in_reference, in_output, strict=True)),
        "prose chrF": chrf_prose(sources, references, outputs),
        "prose chrF, glosses removed from both": chrf_prose(
            unmarked,
            [GLOSS.sub("", t) for t in references],
            [GLOSS.sub("", t) for t in outputs],
        ),
    }


def corpus_share(folder: Path) -> dict:
    from core.catalogs import find_catalogs, read_catalog

    prose = glossed = 0
    for path in find_catalogs([folder])[0]:
        for e in read_catalog(path):
            if e.obsolete or e.fuzzy or not e.msgstr or e.msgstr == e.msgid:
                continue
            prose += 1
            glossed += bool(GLOSS.search(e.msgstr))
    return {"prose translations": prose, "with a gloss": glossed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--corpus", type=Path)
    args = parser.parse_args()
    by_split = predictions_by_split(args.predictions)
    report = {f"{split} split": split_figures(rows) for split, rows in sorted(by_split.items())}
    if args.corpus:
        report[str(args.corpus)] = corpus_share(args.corpus)
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
