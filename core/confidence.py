"""How far a draft can be trusted, from what the engine already has, and the choice
among several candidates (consensus, or minimum Bayes risk, decoding).

- ``token_confidence``: the geometric mean of the model's probabilities of the tokens
  it chose (exp of the mean token logprob), in [0, 1].
- ``consensus``: of N candidates of one source, the one with the highest mean chrF
  against the others (sacrebleu's CHRF, the project's evaluation metric) and that
  agreement, in [0, 1]: candidates that all say the same thing are likelier right.
- ``combine``: one confidence from both (their mean); with one candidate there is no
  agreement and the token confidence is the confidence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any


def token_confidence(logprobs: Sequence[float] | None) -> float | None:
    """exp(mean token logprob); None without logprobs (an engine that gave none)."""
    if not logprobs:
        return None
    return math.exp(sum(logprobs) / len(logprobs))


@functools.cache
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


def agreement_matrix(candidates: Sequence[str]) -> list[list[float]]:
    """Sentence chrF (0-100) of each candidate (rows) against each other (columns);
    identical texts score 100 without scoring (most samples of a sure model repeat)."""
    chrf = _chrf()
    cache: dict[tuple[str, str], float] = {}
    rows = []
    for hyp in candidates:
        row = []
        for ref in candidates:
            if hyp == ref:
                row.append(100.0)
                continue
            if (hyp, ref) not in cache:
                cache[(hyp, ref)] = chrf.sentence_score(hyp, [ref]).score
            row.append(cache[(hyp, ref)])
        rows.append(row)
    return rows


def consensus(candidates: Sequence[str]) -> tuple[int, float | None]:
    """(index of the candidate that agrees most with the others, its mean agreement in
    [0, 1]); the first wins ties, so with the greedy output first it is kept when
    nothing beats it. One candidate: (0, None)."""
    if len(candidates) < 2:
        return 0, None
    matrix = agreement_matrix(candidates)
    n = len(candidates)
    means = [(sum(row) - row[i]) / (n - 1) for i, row in enumerate(matrix)]
    best = max(range(n), key=lambda i: (means[i], -i))
    return best, means[best] / 100


def combine(token: float | None, agreement: float | None) -> float | None:
    """One confidence in [0, 1] from the token confidence and the agreement (either may
    be missing), rounded to 3 places."""
    parts = [p for p in (token, agreement) if p is not None]
    if not parts:
        return None
    return round(sum(parts) / len(parts), 3)
