"""A training run's progress: loss, tokens/s and ETA on stderr while it runs; then the
figures a manifest records (``summary``) and the benchmarks' statistics (``stats``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from training.console import log


@dataclass
class Progress:
    """tokens/s counts real (non-padding) tokens and leaves out the time up to the
    first log, where kernels compile and caches warm up."""

    batches_per_epoch: int = 0
    padding_efficiency: float = 1.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    started: float = 0.0
    tokens_seen: int = 0
    first_step: int = 0
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens) at each log

    def callback(self) -> Any:
        from transformers import TrainerCallback

        progress = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                progress.started = time.time()
                progress.first_step = state.global_step
                progress.tokens_seen = 0

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                if not logs or "loss" not in logs:
                    return
                step, total = state.global_step, max(state.max_steps, 1)
                progress.losses.append((step, float(logs["loss"])))
                progress.marks.append((time.time(), progress.tokens_seen))
                elapsed = time.time() - progress.started
                eta = elapsed / max(step - progress.first_step, 1) * (total - step)
                log(
                    f"step {step}/{total}  loss {logs['loss']:.4f}  "
                    f"{progress.tokens_per_second():,.0f} tok/s{progress.latest()}  "
                    f"ETA {duration(eta)}"
                )

        return _Callback()

    def tokens_per_second(self) -> float:
        if len(self.marks) >= 2:
            (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        else:
            (t0, n0), (t1, n1) = (self.started, 0), (time.time(), self.tokens_seen)
        return (n1 - n0) / max(t1 - t0, 1e-9)

    def latest(self) -> str:
        """The rate since the previous log and, on CUDA, the peak memory so far: what a
        run cut short still tells."""
        import torch

        out = ""
        if len(self.marks) >= 2:
            (t0, n0), (t1, n1) = self.marks[-2], self.marks[-1]
            out += f" (now {(n1 - n0) / max(t1 - t0, 1e-9):,.0f})"
        if torch.cuda.is_available():
            out += f"  peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        return out

    def summary(self) -> dict[str, float]:
        """What the manifest records: how long, how fast, how much memory, the loss."""
        import torch

        out: dict[str, float] = {"train_seconds": round(time.time() - self.started, 1)}
        if self.losses:
            out["first_loss"] = round(self.losses[0][1], 4)
            out["final_loss"] = round(self.losses[-1][1], 4)
        out["tokens_per_second"] = round(self.tokens_per_second(), 1)
        if torch.cuda.is_available():
            out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return out

    def stats(self) -> dict[str, Any]:
        """The summary and what benchmarks compare besides (Experimental.stats_file)."""
        import torch

        out: dict[str, Any] = dict(self.summary())
        out["batches_per_epoch"] = self.batches_per_epoch
        out["padding_efficiency"] = round(self.padding_efficiency, 4)
        out["train_tokens"] = self.tokens_seen
        if len(self.marks) >= 4:  # the second half alone: past compilation for new shapes
            (t0, n0), (t1, n1) = self.marks[len(self.marks) // 2], self.marks[-1]
            out["tokens_per_second_second_half"] = round((n1 - n0) / max(t1 - t0, 1e-9), 1)
        if torch.cuda.is_available():
            out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        out["losses"] = [[step, round(loss, 4)] for step, loss in self.losses]  # the curve
        return out


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )
