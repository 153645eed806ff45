"""Token-budget batches of similar-length examples.

PO pairs run from 3 to 500 tokens; padding a random batch to its longest member
wastes most of the compute. Examples are shuffled, cut into large chunks, each
chunk sorted by length and cut into batches whose padded size (rows x longest)
stays under a token budget; the batches are then shuffled again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


class TokenBudgetBatchSampler:
    """``pad_multiple`` rounds every padded length up (the collator pads the same way),
    so that compiled kernels see few distinct batch shapes."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        seed: int = 0,
        max_rows: int = 256,
        pad_multiple: int = 1,
    ) -> None:
        self.pad_multiple = pad_multiple
        if max_tokens < self._padded(max(lengths, default=1)):
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than the longest example "
                f"({max(lengths)} tokens)"
            )
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.seed = seed
        self.epoch = 0
        self._batches = self._make_batches()

    def set_epoch(self, epoch: int) -> None:  # called by the HF Trainer, also on resume
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._make_batches()

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
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
        rng.shuffle(batches)
        return batches

    def _padded(self, length: int) -> int:
        return -(-length // self.pad_multiple) * self.pad_multiple

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def padding_efficiency(self) -> float:
        """Share of the padded batch cells that hold real tokens."""
        real = sum(self.lengths)
        padded = sum(len(b) * self._padded(max(self.lengths[i] for i in b)) for b in self._batches)
        return real / padded if padded else 1.0


def _mean(values: Sequence[int]) -> int:
    return int(sum(values) / len(values)) if values else 1
