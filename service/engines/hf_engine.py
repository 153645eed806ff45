"""Fallback engine: transformers + PEFT, for tests and machines without vLLM.

It runs one batch at a time in a worker thread (a lock serialises batches): fine for
tests and small jobs, not for serving many clients; /health reports it as a fallback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from core.settings import Settings
from service.engines.base import Engine, Generation, Sampling


def sampling_kwargs(temperature: float) -> dict[str, Any]:
    """transformers ``generate`` options: greedy at 0, else plain sampling at
    ``temperature`` (no top-k/top-p from the model's generation config, as in vLLM)."""
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}


def stop_kwargs(stop: list[int], longest: int, ignore_stop: bool) -> dict[str, Any]:
    """``generate`` options that end a row at a stop token, or with ``ignore_stop`` run
    every row to the longest budget (the model's own end token is held back until then)."""
    if ignore_stop:
        return {"min_new_tokens": longest}
    return {"eos_token_id": stop}


def left_padded(prompts: list[list[int]], pad: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) for ``generate``: left padding, so that every row's
    generation starts at the same position."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def cut_generation(
    new_tokens: list[int], budget: int, stop: list[int], logprobs: list[float] | None = None
) -> Generation:
    """A row's generated tokens (and their logprobs) up to its own budget and first stop
    token (``generate`` runs every row of a batch to the batch's longest budget)."""
    tokens = new_tokens[:budget]
    cut = next((i for i, t in enumerate(tokens) if t in stop), None)
    end = len(tokens) if cut is None else cut
    kept = logprobs[:end] if logprobs is not None else None
    return Generation(tokens[:end], "length" if cut is None else "stop", kept)


class ChosenLogprobs:
    """A ``generate`` logits processor that records each row's logprob of the token it
    chose at each step, keeping one step's distribution at a time (``output_logits``
    would keep every step's: rows x steps x vocabulary, tens of GB for a batch of long
    outputs with Gemma's 262k-token vocabulary). transformers runs a caller's processors
    before its sampling warpers (temperature, top-k), so these are the model's own
    logprobs, as vLLM reports them."""

    def __init__(self) -> None:
        self.steps: list[Any] = []  # [rows] tensors, one per generated token
        self._last: Any = None  # the previous step's log-softmax, until its token is known

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._last is not None:  # the token chosen from it is now input_ids' last
            self.steps.append(self._last.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self._last = scores.float().log_softmax(dim=-1)
        return scores

    def rows(self, new_tokens: Any) -> list[list[float]]:
        """Each row's logprobs for ``new_tokens`` [rows, steps], the generated ids."""
        import torch

        if self._last is not None and new_tokens.shape[1] > len(self.steps):
            last = new_tokens[:, len(self.steps) : len(self.steps) + 1]
            self.steps.append(self._last.gather(-1, last).squeeze(-1))
            self._last = None
        if not self.steps:
            return [[] for _ in range(new_tokens.shape[0])]
        return torch.stack(self.steps, dim=1).tolist()


class HfEngine(Engine):
    kind = "transformers (fallback)"

    def __init__(
        self,
        model: Any,
        pad_token_id: int,
        device: str = "cpu",
        *,
        repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        logprobs: bool = True,
    ) -> None:
        self._base = model
        self.logprobs = logprobs  # the chosen tokens' logprobs come back (Settings.confidence)
        self._repetition_penalty = repetition_penalty
        self._frequency_penalty = frequency_penalty
        self._device = device
        self._peft: Any = None
        self._pad = pad_token_id
        self._lock = asyncio.Lock()
        self._running = 0

    async def add_adapter(self, key: str, path: Path) -> None:
        async with self._lock:
            await asyncio.to_thread(self._load, key, path)

    def _load(self, key: str, path: Path) -> None:
        from peft import PeftModel

        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, str(path), adapter_name=key)
            self._peft.eval()
            return
        try:
            self._peft.load_adapter(str(path), adapter_name=key)
        except BaseException:
            if key in self._peft.peft_config:
                self._peft.delete_adapter(key)
            raise

    async def remove_adapter(self, key: str) -> None:
        async with self._lock:
            peft = self._peft
            # PEFT keeps at least one adapter
            if peft is not None and key in peft.peft_config and len(peft.peft_config) > 1:
                if peft.active_adapter == key:
                    peft.set_adapter(next(k for k in peft.peft_config if k != key))
                peft.delete_adapter(key)

    def dead(self) -> str | None:
        return None  # runs in this process: it cannot die alone

    def pending(self) -> int:
        return self._running

    async def run(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        async with self._lock:
            cancel = threading.Event()
            job = asyncio.get_running_loop().run_in_executor(
                None,
                self._generate,
                prompts,
                sampling.max_tokens,
                sampling.stop_token_ids,
                sampling.adapter,
                cancel,
                sampling.temperature,
                sampling.seeds[0] if sampling.seeds else None,
                sampling.ignore_stop,
            )
            self._running = len(prompts)
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                cancel.set()  # the stopping criterion ends generate() at the next token
                await asyncio.wait([job])
                raise
            finally:
                self._running = 0

    def _generate(
        self,
        prompts: list[list[int]],
        max_tokens: list[int],
        stop: list[int],
        adapter: str | None,
        cancel: threading.Event,
        temperature: float = 0.0,
        seed: int | None = None,
        ignore_stop: bool = False,
    ) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                shape = (input_ids.shape[0],)
                return torch.full(shape, cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        ids, mask = left_padded(prompts, self._pad)
        if adapter is not None:
            self._peft.set_adapter(adapter)
            model, scope = self._peft, nullcontext()
        else:
            model = self._peft or self._base
            scope = self._peft.disable_adapter() if self._peft is not None else nullcontext()
        # one generator for the whole batch: transformers cannot seed rows apart
        if seed is not None:
            torch.manual_seed(seed)
        recorder = ChosenLogprobs() if self.logprobs else None
        processors = [recorder] if recorder is not None else []
        with torch.inference_mode(), scope:
            out = model.generate(
                input_ids=ids.to(self._device),
                attention_mask=mask.to(self._device),
                max_new_tokens=max(max_tokens),
                **sampling_kwargs(temperature),
                **stop_kwargs(stop, max(max_tokens), ignore_stop),
                pad_token_id=self._pad,
                stopping_criteria=StoppingCriteriaList([Cancelled()]),
                # the recorder first: the model's own logprobs, as vLLM reports them
                logits_processor=LogitsProcessorList(
                    [*processors, *self._penalty_processors(ids.shape[1])]
                ),
                **self._penalty_kwargs(),
            )
        new = out[:, ids.shape[1] :]
        logprobs = recorder.rows(new) if recorder is not None else [None] * new.shape[0]
        return [
            cut_generation(new[row].tolist(), budget, [] if ignore_stop else stop, logprobs[row])
            for row, budget in enumerate(max_tokens)
        ]

    def _penalty_kwargs(self) -> dict[str, Any]:
        """transformers' repetition_penalty, when set."""
        if self._repetition_penalty != 1.0:
            return {"repetition_penalty": self._repetition_penalty}
        return {}

    def _penalty_processors(self, width: int) -> list[Any]:
        """vLLM's frequency_penalty rule (generated tokens only), when set."""
        if self._frequency_penalty:
            return [frequency_penalty(self._frequency_penalty, width)]
        return []


def frequency_penalty(penalty: float, width: int) -> Any:
    """A logits processor: each token's logit less ``penalty`` times its count among the
    tokens generated so far (past the prompt's ``width`` columns)."""
    import torch
    from transformers import LogitsProcessor

    class FrequencyPenalty(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            generated = input_ids[:, width:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            return scores - penalty * counts

    return FrequencyPenalty()


@asynccontextmanager
async def open_hf_engine(settings: Settings, model_path: Path) -> AsyncIterator[HfEngine]:
    def load() -> HfEngine:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        dtype_name = settings.engine_dtype()
        dtype: Any = "auto" if dtype_name == "auto" else getattr(torch, dtype_name)
        # the first CUDA GPU where there is one (a GPU box without vLLM), else the CPU
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=dtype).to(device)
        model.eval()
        config = AutoConfig.from_pretrained(str(model_path))
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        if isinstance(pad, list):
            pad = pad[0]
        return HfEngine(
            model,
            int(pad or 0),
            device,
            repetition_penalty=settings.repetition_penalty,
            frequency_penalty=settings.frequency_penalty,
            logprobs=settings.confidence,
        )

    yield await asyncio.to_thread(load)
