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


class PackedBatchSampler:
    """Whole examples packed into rows of ``row_tokens`` tokens, ``rows`` rows a batch, so
    every batch has the one shape (rows, row_tokens) (``--packing``). Each epoch the
    examples are shuffled and cut into chunks; each chunk is packed best-fit, longest
    first. A batch is its rows' example indices, row after row; ``rows_of`` gives back
    the rows, and ``collate`` builds the tensors: position ids restart at each example,
    which is what keeps attention inside it (transformers' packed-sequence mask)."""

    def __init__(
        self,
        lengths: Sequence[int],
        row_tokens: int,
        rows: int,
        *,
        seed: int = 0,
        chunk: int = 4096,
    ) -> None:
        if row_tokens < max(lengths, default=1):
            raise ValueError(
                f"rows of {row_tokens} tokens are shorter than the longest example "
                f"({max(lengths)} tokens)"
            )
        self.lengths = list(lengths)
        self.row_tokens, self.rows, self.seed, self.chunk = row_tokens, max(1, rows), seed, chunk
        self.epoch = 0
        self._batches = self._make_batches()

    def set_epoch(self, epoch: int) -> None:  # called by the HF Trainer, also on resume
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._make_batches()

    def _make_batches(self) -> list[list[list[int]]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches: list[list[list[int]]] = []
        for start in range(0, len(order), self.chunk):
            packed = pack_rows(order[start : start + self.chunk], self.lengths, self.row_tokens)
            rng.shuffle(packed)
            batches += [packed[i : i + self.rows] for i in range(0, len(packed), self.rows)]
        rng.shuffle(batches)
        self._rows = {tuple(i for row in b for i in row): b for b in batches}
        return batches

    def rows_of(self, indices: Sequence[int]) -> list[list[int]]:
        return self._rows[tuple(indices)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter([i for row in batch for i in row] for batch in self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def padding_efficiency(self) -> float:
        cells = len(self._batches) * self.rows * self.row_tokens
        return sum(self.lengths) / cells if cells else 1.0

    def collate(self, examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
        """``examples`` as the batch's indices list them (each with its ``index``)."""
        import torch

        by_index = {e["index"]: e for e in examples}
        shape = (self.rows, self.row_tokens)
        ids = torch.full(shape, pad_id, dtype=torch.long)
        labels = torch.full(shape, -100, dtype=torch.long)
        # a filler row, and each row's tail: its own sequence of pad tokens, no labels
        positions = torch.arange(self.row_tokens).repeat(self.rows, 1)
        for r, row in enumerate(self.rows_of([e["index"] for e in examples])):
            at = 0
            for index in row:
                example = by_index[index]
                n = len(example["input_ids"])
                ids[r, at : at + n] = torch.tensor(example["input_ids"])
                labels[r, at : at + n] = torch.tensor(example["labels"])
                positions[r, at : at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(self.row_tokens - at)
        return {"input_ids": ids, "labels": labels, "position_ids": positions}


def pack_rows(indices: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: each example, longest first, into the open row with the least
    room that holds it (a new row when none does)."""
    import bisect

    rows: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # (room left, row number), sorted
    for index in sorted(indices, key=lambda i: -lengths[i]):
        need = lengths[index]
        at = bisect.bisect_left(rooms, (need, -1))
        if at == len(rooms):
            rows.append([index])
            bisect.insort(rooms, (capacity - need, len(rows) - 1))
            continue
        room, row = rooms.pop(at)
        rows[row].append(index)
        bisect.insort(rooms, (room - need, row))
    return rows
