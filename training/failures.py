"""What went wrong in the drafts of one split, counted (issue 42's failure report).

Each kind is a test on one (source, reference, output) that a reviewer would agree
with; the thresholds are in the constants below:

- dropped_markup: a markup item of the source is missing from the output;
- short: the output's prose is under SHORT_RATIO of the reference's (clauses dropped);
- long: over LONG_RATIO of the reference's (clauses added or repeated);
- repeated: a run of REPEAT_CHARS characters occurs more often in the output than in
  the reference, twice at least (a sentence repeated in place of its second half);
- english_left: ENGLISH_WORDS or more English words in the output's prose that the
  reference's prose does not have (left untranslated);
- copied_source: the output is the source while the reference translates it;
- empty: no output (refused or failed).

Beside them: length ratios (output to reference, output to source), and the memory
examples the prompt showed, banded by their similarity to the source
(core.retrieval.similarity), with the failures and chrF of each band: do unrelated
examples go with the failures?
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence

from sacrebleu.metrics import CHRF

from core.markup import kept_count, prose

SHORT_RATIO = 0.6
LONG_RATIO = 1.6
MIN_RATIO_CHARS = 12  # references shorter than this are not judged by length
REPEAT_CHARS = 8
ENGLISH_WORDS = 3
CASES_KEPT = 5  # examples of each kind in the report
KINDS = ("dropped_markup", "short", "long", "repeated", "english_left", "copied_source", "empty")
BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 1.01))

_ENGLISH_RE = re.compile(r"[A-Za-z]{3,}")
_SPACE_RE = re.compile(r"\s+")


def _chars(text: str) -> str:
    return _SPACE_RE.sub("", prose(text))


def _ratio(output: str, other: str) -> float | None:
    """Prose length of the output to ``other``'s; None for short texts and no output
    (counted as ``empty``)."""
    size = len(_chars(other))
    if size < MIN_RATIO_CHARS or not output.strip():
        return None
    return len(_chars(output)) / size


def repeated_run(output: str, reference: str, n: int = REPEAT_CHARS) -> str | None:
    """A run of ``n`` characters the output repeats more often than the reference."""
    out, ref = _chars(output), _chars(reference)
    grams = Counter(out[i : i + n] for i in range(len(out) - n + 1))
    ref_grams = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
    for gram, count in grams.items():
        if count >= 2 and count > ref_grams[gram]:
            return gram
    return None


def english_left(output: str, reference: str) -> list[str]:
    """English words of the output's prose that the reference's prose lacks."""
    have = {w.lower() for w in _ENGLISH_RE.findall(prose(reference))}
    return [w for w in _ENGLISH_RE.findall(prose(output)) if w.lower() not in have]


def failure_kinds(source: str, reference: str, output: str) -> list[str]:
    """The kinds (KINDS) of failure of one draft."""
    if not output.strip():
        return ["empty"]
    kinds = []
    kept, total = kept_count(source, output)
    if kept < total:
        kinds.append("dropped_markup")
    ratio = _ratio(output, reference)
    if ratio is not None and ratio < SHORT_RATIO:
        kinds.append("short")
    if ratio is not None and ratio > LONG_RATIO:
        kinds.append("long")
    if repeated_run(output, reference):
        kinds.append("repeated")
    if len(english_left(output, reference)) >= ENGLISH_WORDS:
        kinds.append("english_left")
    if output.strip() == source.strip() and reference.strip() != source.strip():
        kinds.append("copied_source")
    return kinds


def failure_report(
    sources: Sequence[str],
    references: Sequence[str],
    outputs: Sequence[str],
    similarities: Sequence[float | None] | None = None,
) -> dict[str, object]:
    """The report of one split. ``similarities``: for each entry, the similarity of the
    most similar example its prompt showed, None where it showed none (or the memory
    answered)."""
    n = len(sources)
    sims = list(similarities) if similarities is not None else [None] * n
    kinds = [failure_kinds(*row) for row in zip(sources, references, outputs, strict=True)]
    counts = {kind: sum(kind in k for k in kinds) for kind in KINDS}
    cases: dict[str, list[dict[str, object]]] = {kind: [] for kind in KINDS}
    for i, found in enumerate(kinds):
        for kind in found:
            if len(cases[kind]) < CASES_KEPT:
                case: dict[str, object] = {
                    "source": sources[i], "reference": references[i], "output": outputs[i]
                }  # fmt: skip
                if sims[i] is not None:
                    case["example_similarity"] = round(sims[i], 3)  # type: ignore[arg-type]
                cases[kind].append(case)
    return {
        "entries": n,
        "failing": sum(bool(k) for k in kinds),
        "counts": counts,
        "length_ratio_to_reference": _spread(
            [_ratio(o, r) for o, r in zip(outputs, references, strict=True)]
        ),
        "length_ratio_to_source": _spread(
            [_ratio(o, s) for o, s in zip(outputs, sources, strict=True)]
        ),
        "examples": _bands(sources, references, outputs, sims, kinds),
        "cases": {k: v for k, v in cases.items() if v},
    }


def _spread(values: Sequence[float | None]) -> dict[str, float]:
    known = sorted(v for v in values if v is not None)
    if not known:
        return {}
    pick = lambda q: known[min(len(known) - 1, int(q * len(known)))]  # noqa: E731
    return {
        "median": round(statistics.median(known), 3),
        "p10": round(pick(0.1), 3),
        "p90": round(pick(0.9), 3),
    }


def _bands(
    sources: Sequence[str],
    references: Sequence[str],
    outputs: Sequence[str],
    sims: Sequence[float | None],
    kinds: Sequence[list[str]],
) -> dict[str, object]:
    shown = [s for s in sims if s is not None]
    rows = []
    for label, members in _band_members(sims):
        prose_rows = [i for i in members if references[i] != sources[i]]
        chrf = (
            CHRF().corpus_score(
                [outputs[i] for i in prose_rows], [[references[i] for i in prose_rows]]
            )
            if prose_rows
            else None
        )
        rows.append(
            {
                "band": label,
                "entries": len(members),
                "failing": sum(bool(kinds[i]) for i in members),
                "chrf_prose": round(chrf.score, 2) if chrf else None,
            }
        )
    return {
        "entries_with_examples": len(shown),
        "mean_best_similarity": round(statistics.mean(shown), 3) if shown else None,
        "bands": rows,
    }


def _band_members(sims: Sequence[float | None]) -> list[tuple[str, list[int]]]:
    out = [("no examples", [i for i, s in enumerate(sims) if s is None])]
    for low, high in BANDS:
        label = f"best example {low:.1f}-{min(high, 1.0):.1f}"
        out.append((label, [i for i, s in enumerate(sims) if s is not None and low <= s < high]))
    return out


def summary_metrics(report: dict[str, object]) -> dict[str, float]:
    """The counts as manifest metrics (floats), named ``failures_KIND``."""
    counts = report["counts"]
    assert isinstance(counts, dict)
    return {f"failures_{kind}": float(counts[kind]) for kind in KINDS}
