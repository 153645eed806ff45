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
from service.engines.base import Engine, Generation, Sampling, model_max_len


class VllmEngine(Engine):
    kind = "vllm"

    def __init__(
        self, llm: Any, *, repetition_penalty: float = 1.0, frequency_penalty: float = 0.0
    ) -> None:
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
        seeds: list[int | None] = list(s.seeds) if s.seeds is not None else [None] * len(prompts)
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
            logprobs=0,  # the chosen tokens' own logprobs (the draft's confidence)
            output_kind=RequestOutputKind.FINAL_ONLY,
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


@asynccontextmanager
async def open_vllm_engine(settings: Settings, model_path: Path) -> AsyncIterator[VllmEngine]:
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    args = AsyncEngineArgs(
        model=str(model_path),
        tokenizer=str(model_path),
        dtype=settings.engine_dtype(),
        seed=0,
        max_model_len=model_max_len(model_path, settings.max_model_len),
        max_num_seqs=settings.engine_max_num_seqs(),
        max_num_batched_tokens=settings.engine_max_num_batched_tokens(),
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enable_lora=True,
        max_lora_rank=settings.max_lora_rank,
        max_loras=settings.max_loras,
        max_cpu_loras=max(settings.max_loras, 8),
        enable_prefix_caching=settings.prefix_caching,
        enforce_eager=not settings.cuda_graphs,
        disable_log_stats=True,
        use_tqdm_on_load=False,  # no progress bar in logs or in translate-po's report
    )
    # Start-up blocks for tens of seconds (engine process, weights, KV cache); a thread
    # keeps the event loop answering /health and /ready meanwhile.
    llm = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
    engine = VllmEngine(
        llm,
        repetition_penalty=settings.repetition_penalty,
        frequency_penalty=settings.frequency_penalty,
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
