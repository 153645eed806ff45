"""The translator: what the service does, without HTTP.

``open_translator(settings)`` builds the engine and loads the adapters; the HTTP app
and the CLI client both call ``Translator.translate``. Prompts go through
core.prompt only (PromptBuilder.prompt -> generate -> markup retry -> finish)
with the PromptContract of the adapter that serves the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

from core.code import keep_code
from core.confidence import combine, consensus, token_confidence
from core.markup import check_translation
from core.prompt import (
    RETRY_TEMPERATURE,
    Prepared,
    Previous,
    PromptBuilder,
    max_new_tokens,
    placeholder,
    stop_token_ids,
    unknown_placeholders,
)
from core.registry import Manifest, Registry, RegistryError, parse_ref
from core.settings import Settings
from service.adapters import (
    LoadedAdapter,
    base_weight_shapes,
    check_adapter_files,
    check_adapter_shapes,
    check_adapter_values,
    load_adapter_terms,
    load_memory,
)
from service.engines import Engine, model_max_len, open_engine
from service.errors import (
    AdapterLoadError,
    EngineDead,
    InvalidRequest,
    Overloaded,
    UnknownAdapter,
)
from service.metrics import Metrics
from service.schemas import (
    MAX_MSGCTXT_CHARS,
    AdapterInfo,
    AdapterList,
    Health,
    ReloadResponse,
    TranslateItem,
    TranslateRequest,
    TranslateResponse,
    Translation,
)

log = logging.getLogger("polingo.service")

WARMUP_TEXT = "Return the :class:`list` of ``items``."
KEEP_VERSIONS = 2  # per adapter name: the current one and the one before it


class Outcome(NamedTuple):
    """One text's translation, with what evaluation reports beside the answer."""

    text: str  # the answer (catalog text)
    greedy: str  # the greedy translation, before the markup retry
    from_memory: bool
    warnings: list[str]
    retried: bool  # the greedy translation lost markup, so candidates were sampled
    confidence: float | None = None  # in [0, 1] (core.confidence); 1 for memory answers


class _Draft(NamedTuple):  # one generated text, decoded
    text: str
    finish_reason: str
    token_confidence: float | None  # core.confidence.token_confidence of its tokens
    agreement: float | None = None  # mean chrF/100 with the other candidates, if drawn


class _Job(NamedTuple):  # one text on its way to the engine
    prompt: list[int]
    budget: int  # max new tokens
    prepared: Prepared  # the source as the prompt builder prepared it


class Translator:
    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        engine: Engine,
        tokenizer: Any,
        base_model: str,
        base_path: Path,
        default_adapter: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.engine = engine
        self.tokenizer = tokenizer
        self.base_model = base_model
        self.base_path = base_path
        self.default_adapter = default_adapter
        self.metrics = metrics or Metrics()
        self.stop_ids = stop_token_ids(tokenizer)
        self.max_model_len = model_max_len(base_path, settings.max_model_len)
        self.in_flight = 0
        self._base_shapes = base_weight_shapes(base_path)
        self._loaded: dict[str, LoadedAdapter] = {}  # "NAME@VERSION" -> adapter
        self._current: dict[str, LoadedAdapter] = {}  # NAME -> the version requests get
        self._history: dict[str, list[str]] = {}  # NAME -> keys, oldest first
        self._used: dict[str, None] = {}  # loaded keys, least recently used first
        self._lock = asyncio.Lock()  # one adapter load at a time

    # ---- translation ----
    async def translate(self, request: TranslateRequest) -> TranslateResponse:
        """The service's answer to one request (HTTP and in-process clients)."""
        self._check(request)
        adapter = await self._adapter_for(request.adapter)
        outcomes = await self.translate_items(adapter, request.items)
        return TranslateResponse(
            [
                Translation(o.text, adapter.key, o.from_memory, o.warnings, o.confidence)
                for o in outcomes
            ]
        )

    async def translate_items(
        self, adapter: LoadedAdapter, items: list[TranslateItem]
    ) -> list[Outcome]:
        """Memory lookup, then prompt -> generate -> markup retry -> finish for the rest.
        Evaluation calls this too, so that it scores exactly what the service answers."""
        results: list[Outcome | None] = [None] * len(items)
        todo: list[int] = []
        can_update = adapter.prompts.contract.update
        for i, item in enumerate(items):
            human = adapter.memory.lookup(item.text, item.msgctxt)
            old = item.previous_translation
            if human is not None:
                warnings = check_translation(item.text, human)
                results[i] = Outcome(human, human, True, warnings, False, 1.0)
            elif old is not None and not can_update:  # keep the human's work, not start over
                note = f"{adapter.key} has no update mode: the previous translation is kept"
                warnings = [note, *check_translation(item.text, old)]
                results[i] = Outcome(old, old, False, warnings, False)
            else:
                todo.append(i)
        texts = [items[i].text for i in todo]
        shown = adapter.prompts.examples_for(texts)  # one retrieval
        previous = [_previous(items[i]) for i in todo]
        prepared = adapter.prompts.prompts(texts, [items[i].msgctxt for i in todo], shown, previous)
        jobs = [self._encode(p, f"items[{i}].text") for i, p in zip(todo, prepared, strict=True)]
        hits = len(items) - len(todo)
        self.metrics.memory_hits.inc(hits)
        self.metrics.items.labels("memory").inc(hits)
        if todo:
            greedy = await self._generate(adapter, jobs)
            chosen = await self._consensus(adapter, jobs, greedy)
            generated = await self._retry_lost_markup(adapter, jobs, chosen)
            builder = adapter.prompts
            for i, job, first, draft in zip(todo, jobs, greedy, generated, strict=True):
                output, warnings = _answer(builder, job.prepared, draft.text)
                warnings += check_translation(items[i].text, output)
                warnings += [
                    f"unknown placeholder: {placeholder(int(n))}"
                    for n in unknown_placeholders(output)
                ]
                if draft.finish_reason == "length":
                    warnings.append("generation stopped at the token limit (output may be cut)")
                # the greedy text as answered: most often the draft itself, answered above
                same = draft.text == first.text
                results[i] = Outcome(
                    output,
                    output if same else _answer(builder, job.prepared, first.text)[0],
                    False,
                    warnings,
                    self.settings.markup_retries > 0
                    and not builder.keeps_markup(job.prepared, first.text),
                    combine(draft.token_confidence, draft.agreement),
                )
            self.metrics.items.labels("model").inc(len(todo))
        return [r for r in results if r is not None]

    def _check(self, request: TranslateRequest) -> None:
        # The HTTP schema checks these too; in-process callers build Structs unchecked.
        items = request.items
        if not isinstance(items, list) or not items:
            raise InvalidRequest("items must be a non-empty list", param="items")
        if len(items) > self.settings.max_batch:
            raise InvalidRequest(
                f"batch of {len(items)} items exceeds the limit of {self.settings.max_batch}",
                param="items",
            )
        for i, item in enumerate(items):
            text = getattr(item, "text", None)
            if not isinstance(text, str) or not text.strip():
                raise InvalidRequest("text must be a non-empty string", param=f"items[{i}].text")
            if len(text) > self.settings.max_text_chars:
                raise InvalidRequest(
                    f"text of {len(text)} characters exceeds the limit "
                    f"of {self.settings.max_text_chars}",
                    param=f"items[{i}].text",
                )
            if item.msgctxt is not None and not isinstance(item.msgctxt, str):
                raise InvalidRequest(
                    "msgctxt must be a string or null", param=f"items[{i}].msgctxt"
                )
            _check_previous(item, i, self.settings.max_text_chars)
            if item.msgctxt is not None and len(item.msgctxt) > MAX_MSGCTXT_CHARS:
                raise InvalidRequest(
                    f"msgctxt of {len(item.msgctxt)} characters exceeds the limit "
                    f"of {MAX_MSGCTXT_CHARS}",
                    param=f"items[{i}].msgctxt",
                )

    async def _consensus(
        self, adapter: LoadedAdapter, jobs: list[_Job], greedy: list[_Draft]
    ) -> list[_Draft]:
        """With Settings.candidates = N > 1: N-1 samples besides each greedy draft, and
        the candidate that agrees most with the others as answered (core.confidence.consensus)."""
        n = self.settings.candidates
        if n <= 1:
            return greedy
        try:
            samples = await self._generate(
                adapter,
                [job for job in jobs for _ in range(n - 1)],
                temperature=self.settings.consensus_temperature,
                seeds=list(range(1, n)) * len(jobs),
            )
        except Overloaded:  # a full queue: the greedy drafts, without agreement
            return greedy
        out = []
        for k, first in enumerate(greedy):
            candidates = [first, *samples[k * (n - 1) : (k + 1) * (n - 1)]]
            # agreement of the texts as answered (markup restored, code kept): a candidate
            # that drops :func:`sorted` differs by 14 characters there, by 3 as a placeholder
            answers = [_answer(adapter.prompts, jobs[k].prepared, c.text)[0] for c in candidates]
            best, agreement = consensus(answers)
            out.append(candidates[best]._replace(agreement=agreement))
        return out

    async def _retry_lost_markup(
        self, adapter: LoadedAdapter, jobs: list[_Job], generated: list[_Draft]
    ) -> list[_Draft]:
        """Sample candidates for the translations that lost markup, in rounds
        (``retry_rounds``): a text gets the next round only while none of its samples
        keeps the markup. The best of all its candidates wins: for the same greedy draft
        and the same sample for each seed, the answer that drawing all
        Settings.markup_retries samples at once would give, since the first candidate
        that keeps the markup wins."""
        n = self.settings.markup_retries
        builder = adapter.prompts
        failed = [
            k
            for k, draft in enumerate(generated)
            if not builder.keeps_markup(jobs[k].prepared, draft.text)
        ]
        if not failed or n <= 0:
            return generated
        self.metrics.markup_retries.inc(len(failed))
        samples: dict[int, list[_Draft]] = {k: [] for k in failed}
        left, drawn = failed, 0
        for size in retry_rounds(n):
            seeds = list(range(drawn, drawn + size))
            try:
                drafts = await self._generate(
                    adapter,
                    [jobs[k] for k in left for _ in seeds],
                    temperature=RETRY_TEMPERATURE,
                    seeds=seeds * len(left),
                )
            except Overloaded:  # a full queue: the best of what was drawn (with warnings)
                break
            still_lost = []
            for m, k in enumerate(left):
                new = drafts[m * size : (m + 1) * size]
                samples[k] += new
                if not any(builder.keeps_markup(jobs[k].prepared, c.text) for c in new):
                    still_lost.append(k)
            drawn += size
            left = still_lost
            if not left:
                break
        out = list(generated)
        for k in failed:
            candidates = [generated[k], *samples[k]]
            pick = builder.best_for_markup(jobs[k].prepared, [c.text for c in candidates])
            out[k] = next(c for c in candidates if c.text == pick)
            if builder.keeps_markup(jobs[k].prepared, pick):
                self.metrics.markup_repaired.inc()
        return out

    def _encode(self, prepared: Prepared, param: str) -> _Job:
        prompt = prepared.prompt_ids
        budget = max_new_tokens(prepared.source_tokens, cap=self.settings.max_new_tokens_cap)
        budget = min(budget, self.max_model_len - len(prompt))
        if budget < 1:
            raise InvalidRequest(
                f"text too long: its prompt has {len(prompt)} tokens, "
                f"the model takes {self.max_model_len}",
                param=param,
            )
        return _Job(prompt, budget, prepared)

    async def _generate(
        self,
        adapter: LoadedAdapter,
        jobs: list[_Job],
        *,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
    ) -> list[_Draft]:
        if self.in_flight + len(jobs) > self.settings.max_queue:
            self.metrics.rejected.inc()
            raise Overloaded(
                f"{self.in_flight} texts in flight, queue limit "
                f"{self.settings.max_queue}: retry later",
                retry_after=2,
            )
        self.check_alive()
        self.in_flight += len(jobs)
        adapter.in_flight += 1
        self.metrics.queue_depth.set(self.in_flight)
        try:
            generations = await self.engine.generate(
                [job.prompt for job in jobs],
                max_tokens=[job.budget for job in jobs],
                stop_token_ids=self.stop_ids,
                adapter=adapter.key,
                temperature=temperature,
                seeds=seeds,
                ignore_stop=self.settings.exact_length,
            )
        except Exception:
            self.check_alive()  # vLLM's EngineDeadError -> EngineDead (503)
            raise
        finally:
            self.in_flight -= len(jobs)
            adapter.in_flight -= 1
            self.metrics.queue_depth.set(self.in_flight)
        self.metrics.tokens.labels("prompt").inc(sum(len(job.prompt) for job in jobs))
        self.metrics.tokens.labels("generated").inc(sum(len(g.token_ids) for g in generations))
        return [
            _Draft(
                self.tokenizer.decode(g.token_ids, skip_special_tokens=True),
                g.finish_reason,
                token_confidence(g.logprobs),
            )
            for g in generations
        ]

    def dead_reason(self) -> str | None:
        """Why the engine can no longer generate, or None (also for an engine that
        cannot tell, such as the test and benchmark stand-ins)."""
        dead = getattr(self.engine, "dead", None)
        return dead() if dead is not None else None

    def check_alive(self) -> None:
        """Raise EngineDead when the engine can no longer generate."""
        reason = self.dead_reason()
        if reason is not None:
            raise EngineDead(f"the engine died: {reason}")

    # ---- adapters ----
    async def adapter(self, ref: str | None) -> LoadedAdapter:
        """The loaded adapter of 'NAME' (its served version), 'NAME@VERSION' or None."""
        return await self._adapter_for(ref)

    async def _adapter_for(self, ref: str | None) -> LoadedAdapter:
        try:
            name, version = parse_ref(ref or self.default_adapter)
        except RegistryError as exc:
            raise InvalidRequest(str(exc), param="adapter") from None
        if version is None:
            if name in self._current:
                return self._current[name]
            raise UnknownAdapter(f"adapter {name!r} is not served here", param="adapter")
        key = f"{name}@{version}"
        if key not in self._loaded:
            if version not in self.registry.versions(name):
                raise UnknownAdapter(f"adapter {key!r} is not in the registry", param="adapter")
            async with self._lock:  # a pinned older version: load it on first use
                if key not in self._loaded:
                    self._remember(await self._load(name, version))
                    await self._evict_unused()
        self._used.pop(key, None)
        self._used[key] = None  # most recently used
        return self._loaded[key]

    async def _load(self, name: str, version: str) -> LoadedAdapter:
        """Check, load and warm up one version; raise AdapterLoadError when it cannot serve."""
        key = f"{name}@{version}"
        try:
            manifest = self.registry.manifest(key)
        except (RegistryError, OSError, ValueError) as exc:
            raise AdapterLoadError(f"{key}: unreadable manifest ({exc})") from None
        if not self._same_base(manifest.base_model):
            raise AdapterLoadError(
                f"{key} was trained on base model {manifest.base_model!r}; "
                f"this service serves {self.base_model!r}"
            )
        path = self.registry.root / name / version
        check_adapter_files(key, path, self.settings.max_lora_rank)
        check_adapter_shapes(key, path, self._base_shapes)
        await asyncio.to_thread(check_adapter_values, key, path)  # reads every tensor
        memory = load_memory(key, path)
        prompts = PromptBuilder(
            manifest.contract,
            self.tokenizer,
            memory,
            load_adapter_terms(key, path),
            # drop memory examples where training did: past its max_length
            max_length=min(self.max_model_len, _trained_length(manifest, self.max_model_len)),
        )
        adapter = LoadedAdapter(name, version, path, manifest, memory, prompts)
        try:
            await self.engine.add_adapter(key, path)
        except Exception as exc:
            raise AdapterLoadError(
                f"{key}: the engine could not load it ({type(exc).__name__}: {exc})"
            ) from None
        try:  # one-item warm-up: the version must generate before it is served
            warmup = self._encode(adapter.prompts.prompt(WARMUP_TEXT), "warmup")
            await self.engine.generate(
                [warmup.prompt], max_tokens=[4], stop_token_ids=self.stop_ids, adapter=key
            )
        except Exception as exc:
            with suppress(Exception):
                await self.engine.remove_adapter(key)
            raise AdapterLoadError(
                f"{key}: warm-up generation failed ({type(exc).__name__}: {exc})"
            ) from None
        log.info("loaded adapter %s (%d memory entries)", key, len(adapter.memory))
        return adapter

    def _same_base(self, name: str) -> bool:
        if name == self.base_model:
            return True
        try:
            path = resolve_base(name, self.settings.model_cache_dir)
        except Exception:
            return False
        return path.resolve() == self.base_path.resolve()

    def _remember(self, adapter: LoadedAdapter) -> None:
        self._loaded[adapter.key] = adapter
        self._used[adapter.key] = None
        keys = self._history.setdefault(adapter.name, [])
        if adapter.key not in keys:
            keys.append(adapter.key)

    async def _evict(self, name: str) -> None:
        """Unload old versions of ``name`` beyond KEEP_VERSIONS that no request is using."""
        keys = self._history.get(name, [])
        current = self._current.get(name)
        for key in list(keys[:-KEEP_VERSIONS]):
            adapter = self._loaded[key]
            if adapter is current or adapter.in_flight:
                continue
            await self._unload(key)

    async def _evict_unused(self) -> None:
        """Pinned versions (NAME@VERSION in requests) stay loaded until more than
        ``max_resident_adapters`` are: then the least recently used ones that are not
        current and not in use are unloaded."""
        limit = self.settings.max_resident_adapters
        current = {a.key for a in self._current.values()}
        for key in list(self._used):
            if len(self._loaded) <= limit:
                break
            adapter = self._loaded[key]
            if key not in current and not adapter.in_flight:
                await self._unload(key)

    async def _unload(self, key: str) -> None:
        adapter = self._loaded.pop(key)
        self._used.pop(key, None)
        self._history[adapter.name].remove(key)
        log.info("unloaded adapter %s", key)
        await self.engine.remove_adapter(key)

    async def reload(self) -> ReloadResponse:
        """Serve each registry name's current version; a version that fails leaves the
        one before it in service."""
        errors: dict[str, str] = {}
        async with self._lock:
            for name in self.registry.names():
                try:
                    _, version = self.registry.resolve(name)
                except RegistryError as exc:
                    errors[name] = str(exc)
                    continue
                key = f"{name}@{version}"
                if key not in self._loaded:
                    try:
                        self._remember(await self._load(name, version))
                    except AdapterLoadError as exc:
                        log.warning("adapter refused: %s", exc.message)
                        errors[key] = exc.message
                        continue
                if self._current.get(name) is not self._loaded[key]:
                    log.info("now serving %s", key)
                self._current[name] = self._loaded[key]
                await self._evict(name)
        return ReloadResponse(sorted(a.key for a in self._current.values()), errors)

    async def watch(self, interval: float) -> None:
        """Reload whenever a CURRENT pointer changes (polling). A registry that cannot be
        read (a CURRENT being rewritten, a full disk) is logged and polled again: this
        loop ends only when cancelled."""
        reported: dict[str, str] = {}
        while True:
            await asyncio.sleep(interval)
            try:
                wanted = {n: self.registry.current(n) for n in self.registry.names()}
                served = {n: a.version for n, a in self._current.items()}
                if any(v and served.get(n) != v for n, v in wanted.items()):
                    result = await self.reload()
                    for where, error in result.errors.items():
                        if reported.get(where) != error:  # once, not every poll
                            log.warning("reload: %s: %s", where, error)
                    reported = dict(result.errors)
            except Exception:
                log.exception("registry watch: poll failed; polling again")

    # ---- descriptions ----
    def health(self) -> Health:
        return Health(
            "ok", self.engine.kind, self.base_model, sorted(a.key for a in self._current.values())
        )

    def adapters(self) -> AdapterList:
        found = []
        for name in self.registry.names():
            current = self.registry.current(name)
            for version in self.registry.versions(name):
                key = f"{name}@{version}"
                try:
                    manifest = self.registry.manifest(key)
                except Exception:
                    continue
                found.append(
                    AdapterInfo(
                        name=name,
                        version=version,
                        current=version == current,
                        loaded=key in self._loaded,
                        base_model=manifest.base_model,
                        metrics=dict(manifest.metrics),
                        created_at=manifest.created_at,
                    )
                )
        return AdapterList(found)


def retry_rounds(n: int) -> list[int]:
    """The markup retry's ``n`` samples as rounds: 1, then 2, then the rest. Most texts
    that lost markup get it back from their first sample (bench/retry_rounds.py), and the
    samples of long texts were about half of all generated tokens when all ``n`` were
    drawn at once; at most three rounds keep the latency of the rest bounded."""
    rounds, left = [], n
    for size in (1, 2):
        if left > 0:
            rounds.append(min(size, left))
            left -= rounds[-1]
    return rounds + ([left] if left > 0 else [])


def _answer(builder: PromptBuilder, prepared: Prepared, raw: str) -> tuple[str, list[str]]:
    """The catalog text of one generated text, and keep_code's warnings: placeholders
    restored, post-edited, code as the source has it (only its comments translated)."""
    return keep_code(prepared.text, builder.finish(raw, prepared))


def _check_previous(item: TranslateItem, i: int, max_chars: int) -> None:
    """previous_text and previous_translation: both or neither, non-empty strings."""
    given = [(n, getattr(item, n, None)) for n in ("previous_text", "previous_translation")]
    if sum(v is None for _, v in given) == 1:
        missing = next(n for n, v in given if v is None)
        raise InvalidRequest(
            "previous_text and previous_translation go together: give both or neither",
            param=f"items[{i}].{missing}",
        )
    for name, value in given:
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{name} must be a non-empty string", param=f"items[{i}].{name}")
        if len(value) > max_chars:
            raise InvalidRequest(
                f"{name} of {len(value)} characters exceeds the limit of {max_chars}",
                param=f"items[{i}].{name}",
            )


def _previous(item: TranslateItem) -> Previous | None:
    if item.previous_text is None or item.previous_translation is None:
        return None
    return Previous(item.previous_text, item.previous_translation)


def _trained_length(manifest: Manifest, default: int) -> int:
    value = manifest.training.get("max_length")
    return value if isinstance(value, int) and value > 0 else default


def resolve_base(name: str, cache_dir: Path | None) -> Path:
    """A base model folder: ``name`` itself when it is one, else core.base_models resolves it."""
    if Path(name).is_dir():
        return Path(name)
    from core.base_models import resolve_base_model

    return Path(resolve_base_model(name, cache_dir=cache_dir))


def default_adapter_name(settings: Settings, registry: Registry) -> str:
    if settings.adapter:
        return settings.adapter
    names = registry.names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise ValueError(f"registry {registry.root} holds no adapter; train one first")
    raise ValueError(
        f"registry {registry.root} holds several adapters "
        f"({', '.join(names)}): name one (--adapter)"
    )


@asynccontextmanager
async def open_translator(
    settings: Settings, *, metrics: Metrics | None = None, only: str | None = None
) -> AsyncIterator[Translator]:
    """Start the engine, load the adapters, yield a ready Translator; close on exit.

    ``only`` ("NAME@VERSION", evaluation): serve that version alone, as the default,
    instead of every registry name's current version. Raises ValueError when the
    registry has no usable default adapter."""
    from transformers import AutoTokenizer

    registry = Registry(settings.registry)
    default = only or default_adapter_name(settings, registry)
    try:
        name, version = registry.resolve(default)
        manifest = registry.manifest(f"{name}@{version}")
    except (RegistryError, OSError, ValueError) as exc:
        raise ValueError(f"default adapter {default!r}: {exc}") from None
    base_model = settings.base_model or manifest.base_model
    base_path = await asyncio.to_thread(resolve_base, base_model, settings.model_cache_dir)
    tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, str(base_path))
    async with open_engine(settings, base_path) as engine:
        translator = Translator(
            settings=settings,
            registry=registry,
            engine=engine,
            tokenizer=tokenizer,
            base_model=base_model,
            base_path=base_path,
            default_adapter=name,
            metrics=metrics,
        )
        if only:
            loaded = await translator._load(name, version)
            translator._remember(loaded)
            translator._current[name] = loaded
        else:
            result = await translator.reload()
            if name not in translator._current:
                raise ValueError(f"default adapter {default!r} cannot be served: {result.errors}")
        watcher = None
        if settings.watch_interval_s > 0 and not only:
            watcher = asyncio.create_task(translator.watch(settings.watch_interval_s))
        try:
            yield translator
        finally:
            if watcher is not None:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher


async def translate_all(
    translator: Translator,
    ref: str,
    items: list[TranslateItem],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Every item through ``Translator.translate_items``, as the service answers it, in
    length-sorted batches of the service's max_batch (a batch engine then pads little).
    An item the service would refuse gets an empty text with the refusal as its warning.
    ``on_batch(n)`` is called after each batch of n items (progress)."""
    adapter = await translator.adapter(ref)
    size = translator.settings.max_batch
    order = sorted(range(len(items)), key=lambda i: len(items[i].text))
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    # room in the queue for each batch's greedy pass and its markup retry
    per_batch = size * (translator.settings.candidates + translator.settings.markup_retries)
    gate = asyncio.Semaphore(max(1, translator.settings.max_queue // per_batch))
    results: list[Outcome | None] = [None] * len(items)

    async def run(batch: list[int]) -> None:
        async with gate:
            chunk = [items[i] for i in batch]
            try:
                outcomes = await translator.translate_items(adapter, chunk)
            except InvalidRequest:  # one item is at fault: the others are answered
                outcomes = [await _one(translator, adapter, item) for item in chunk]
        for i, outcome in zip(batch, outcomes, strict=True):
            results[i] = outcome
        if on_batch is not None:
            on_batch(len(batch))

    await asyncio.gather(*(run(batch) for batch in batches))
    return [r for r in results if r is not None]


async def _one(translator: Translator, adapter: LoadedAdapter, item: TranslateItem) -> Outcome:
    try:
        return (await translator.translate_items(adapter, [item]))[0]
    except InvalidRequest as exc:
        return Outcome("", "", False, [f"refused: {exc.message}"], False)
