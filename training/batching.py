"""Token-budget batches of similar-length examples.

PO pairs run from 3 to 500 tokens; padding a random batch to its longest member
wastes most of the compute. Examples are shuffled, cut into large chunks, each
chunk sorted by length and cut into batches whose padded size (rows x longest)
stays under a token budget; the batches are then shuffled again.

With ``fixed_shapes=K`` every batch instead has one of K shapes (rows, length):
lengths are bucketed at the K boundaries that waste the fewest cells, and each
bucket's batches have the same row count, the last one filled with filler rows
(``pad_to_shape``). CUDA graphs replay only shapes they recorded.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any


class TokenBudgetBatchSampler:
    """``pad_multiple`` rounds every padded length up, for fewer distinct batch shapes
    (polingo train keeps 1: Unsloth's compiled blocks take new shapes after one
    recompile, so rounding would only add padding)."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        seed: int = 0,
        max_rows: int = 256,
        pad_multiple: int = 1,
        fixed_shapes: int = 0,
    ) -> None:
        self.pad_multiple = pad_multiple
        if max_tokens < self._padded(max(lengths, default=1)):
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than the longest example "
                f"({max(lengths)} tokens)"
            )
        if fixed_shapes < 0:
            raise ValueError(f"fixed_shapes={fixed_shapes} must be 0 (off) or more")
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.seed = seed
        self.epoch = 0
        # bucket length -> rows of every batch in that bucket
        self.shapes: dict[int, int] = {}
        if fixed_shapes:
            for top in bucket_lengths([self._padded(n) for n in self.lengths], fixed_shapes):
                self.shapes[top] = min(max_rows, max_tokens // top)
        self._batches = self._make_batches()

    def set_epoch(self, epoch: int) -> None:  # called by the HF Trainer, also on resume
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._make_batches()

    def shape_for(self, longest: int) -> tuple[int, int] | None:
        """(rows, length) of a batch whose longest example has ``longest`` tokens; None
        without fixed shapes."""
        if not self.shapes:
            return None
        top = min(t for t in self.shapes if t >= longest)
        return self.shapes[top], top

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches = self._fixed_batches(order) if self.shapes else self._budget_batches(order)
        rng.shuffle(batches)
        return batches

    def _budget_batches(self, order: list[int]) -> list[list[int]]:
        chunk = max(1, 64 * self.max_tokens // max(1, _mean(self.lengths)))
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=self.lengths.__getitem__)
            batch: list[int] = []
            longest = 0
            for index in part:
                longest_if_added = max(longest, self._padded(self.lengths[index]))
                if batch and (
                    longest_if_added * (len(batch) + 1) > self.max_tokens
                    or len(batch) >= self.max_rows
                ):
                    batches.append(batch)
                    batch, longest_if_added = [], self._padded(self.lengths[index])
                batch.append(index)
                longest = longest_if_added
            if batch:
                batches.append(batch)
        return batches

    def _fixed_batches(self, order: list[int]) -> list[list[int]]:
        buckets: dict[int, list[int]] = {top: [] for top in self.shapes}
        for index in order:  # already shuffled: each bucket's members in random order
            buckets[self.shape_for(self._padded(self.lengths[index]))[1]].append(index)
        return [
            members[start : start + self.shapes[top]]
            for top, members in buckets.items()
            for start in range(0, len(members), self.shapes[top])
        ]

    def _padded(self, length: int) -> int:
        return -(-length // self.pad_multiple) * self.pad_multiple

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def padding_efficiency(self) -> float:
        """Share of the padded batch cells that hold real tokens."""
        real = sum(self.lengths)
        padded = 0
        for batch in self._batches:
            longest = self._padded(max(self.lengths[i] for i in batch))
            rows, length = self.shape_for(longest) or (len(batch), longest)
            padded += rows * length
        return real / padded if padded else 1.0


def bucket_lengths(lengths: Sequence[int], count: int) -> list[int]:
    """The at most ``count`` bucket tops (ascending, the last one the longest length)
    that minimise the padded cells, each example padded to the smallest top that holds
    it: an exact dynamic programme over the distinct lengths."""
    if not lengths:
        return []
    counts = Counter(lengths)
    values = sorted(counts)
    below = [0]  # below[i]: examples shorter than values[i]
    for v in values:
        below.append(below[-1] + counts[v])
    n = len(values)
    count = min(count, n)
    inf = float("inf")
    # cost[k][j]: least cells for values[:j] in k buckets, the last one topped at values[j-1]
    cost = [[inf] * (n + 1) for _ in range(count + 1)]
    cut = [[0] * (n + 1) for _ in range(count + 1)]
    cost[0][0] = 0
    for k in range(1, count + 1):
        for j in range(1, n + 1):
            top = values[j - 1]
            for i in range(k - 1, j):
                c = cost[k - 1][i] + (below[j] - below[i]) * top
                if c < cost[k][j]:
                    cost[k][j], cut[k][j] = c, i
    k = min(range(1, count + 1), key=lambda kk: cost[kk][n])
    tops, j = [], n
    while j:
        tops.append(values[j - 1])
        j, k = cut[k][j], k - 1
    return sorted(tops)


def pad_to_shape(batch: dict[str, Any], rows: int, length: int, pad_id: int) -> dict[str, Any]:
    """Pad a collated batch (``input_ids``, ``labels``, ``attention_mask``) to exactly
    ``rows`` x ``length``. Filler rows hold pad tokens that are attended but carry no
    labels: no loss, and no fully masked row (SDPA gives NaN for one)."""
    import torch

    ids = batch["input_ids"]
    have_rows, have_len = ids.shape
    if have_rows > rows or have_len > length:
        raise ValueError(f"batch {tuple(ids.shape)} is larger than its shape ({rows}, {length})")
    fill = {"input_ids": pad_id, "labels": -100, "attention_mask": 0}
    out = dict(batch)
    for key, tensor in batch.items():
        if not (torch.is_tensor(tensor) and tuple(tensor.shape) == (have_rows, have_len)):
            continue
        value = fill.get(key, 0)  # any other per-token field (position_ids): zeros
        padded = torch.full((rows, length), value, dtype=tensor.dtype, device=tensor.device)
        padded[:have_rows, :have_len] = tensor
        if key == "attention_mask":
            padded[have_rows:] = 1
        out[key] = padded
    return out


def _mean(values: Sequence[int]) -> int:
    return int(sum(values) / len(values)) if values else 1
