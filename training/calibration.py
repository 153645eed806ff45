"""Whether the drafts' confidence (core/confidence.py) says how good they are: the
held-out drafts ranked by confidence against their sentence chrF.

- calib_chrf_d1 .. calib_chrf_d10: mean sentence chrF of the drafts by confidence
  decile, d1 the least sure tenth;
- calib_spearman: Spearman's rank correlation of confidence with sentence chrF
  (scipy's where installed, else the same statistic through numpy: Pearson's
  correlation of the average ranks);
- calib_top_exact: share of the top decile's drafts equal to the reference;
- calib_drafts: the drafts scored (memory answers and refusals left out).

With several candidates (MBR), ``mbr_metrics`` compares the answers with the greedy
candidates on prose.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import CHRF

from training.quality import chrf_prose

DECILES = 10


def sentence_chrf(references: Sequence[str], outputs: Sequence[str]) -> list[float]:
    chrf = CHRF()
    return [chrf.sentence_score(o, [r]).score for r, o in zip(references, outputs, strict=True)]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of ``x`` and ``y`` (ties get their average rank)."""
    try:
        from scipy.stats import spearmanr
    except ImportError:
        rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
        if rx.std() == 0 or ry.std() == 0:
            return float("nan")
        return float(np.corrcoef(rx, ry)[0, 1])
    return float(spearmanr(x, y).statistic)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # ties: the mean of their ranks
        same = values == value
        ranks[same] = ranks[same].mean()
    return ranks


def calibration(
    references: Sequence[str], outputs: Sequence[str], confidences: Sequence[float | None]
) -> dict[str, float]:
    """The calibration metrics over the drafts that have a confidence."""
    rows = [
        (c, r, o)
        for r, o, c in zip(references, outputs, confidences, strict=True)
        if c is not None and o
    ]
    metrics: dict[str, float] = {"calib_drafts": float(len(rows))}
    if len(rows) < 2:
        return metrics
    rows.sort(key=lambda row: row[0])
    conf = [c for c, _, _ in rows]
    chrf = sentence_chrf([r for _, r, _ in rows], [o for _, _, o in rows])
    metrics["calib_spearman"] = round(spearman(conf, chrf), 4)
    groups = np.array_split(np.arange(len(rows)), min(DECILES, len(rows)))
    for d, group in enumerate(groups, start=1):
        metrics[f"calib_chrf_d{d}"] = round(float(np.mean([chrf[i] for i in group])), 2)
        metrics[f"calib_conf_d{d}"] = round(float(np.mean([conf[i] for i in group])), 3)
    top = groups[-1]
    metrics["calib_top_exact"] = round(sum(rows[i][1] == rows[i][2] for i in top) / len(top), 4)
    return metrics


def mbr_metrics(
    sources: Sequence[str],
    references: Sequence[str],
    outputs: Sequence[str],
    greedy: Sequence[str],
    candidates: int,
) -> dict[str, float]:
    """chrF on prose of the answers (consensus of ``candidates``) and of the greedy
    candidates alone, and the gain; nothing when only greedy was drawn."""
    if candidates <= 1:
        return {}
    answered = chrf_prose(list(sources), list(references), list(outputs))
    alone = chrf_prose(list(sources), list(references), list(greedy))
    return {
        "mbr_candidates": float(candidates),
        "chrf_prose_greedy": alone,
        "mbr_gain_prose": round(answered - alone, 2),
    }
