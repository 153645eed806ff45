"""Issue 17 figures for zh-tw@v1's held-out predictions: the quality metrics as they
are and after the post-editing steps (python bench/quality_v1.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.postedit import convert_simplified, escape_markup_spaces, post_edit  # noqa: E402
from training.quality import quality, sphinx_lint_findings  # noqa: E402

PREDICTIONS = Path("core/default_adapter/zh-tw/v1/report/predictions.jsonl")


def main() -> None:
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines()]
    src = [r["msgid"] for r in rows]
    ref = [r["reference"] for r in rows]
    out = [r["output"] for r in rows]
    variants = {
        "as is": out,
        "opencc": [convert_simplified(o) for o in out],
        "escaped spaces": [escape_markup_spaces(o, s) for o, s in zip(out, src, strict=True)],
        "both": [post_edit(o, s) for o, s in zip(out, src, strict=True)],
    }
    for name, texts in variants.items():
        print(name, json.dumps(quality(src, ref, texts)))
    print(
        "reference post-edited findings:",
        len(sphinx_lint_findings(src, [post_edit(r, s) for r, s in zip(ref, src, strict=True)])),
    )
    for line in sphinx_lint_findings(src, variants["both"]):
        print("  ", line.split(": ", 1)[-1][:120])


if __name__ == "__main__":
    main()
