"""Where translations come from: a running service over HTTP, or the service's translator
opened in this process. Both speak service.schemas; both retry an overloaded service."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import httpx
import msgspec

from core.defaults import DEFAULT_ADAPTER, packaged_registry
from service.schemas import (
    ErrorResponse,
    TranslateItem,
    TranslateRequest,
    TranslateResponse,
    Translation,
)

MAX_RETRY_WAIT_S = 60.0


class BackendUnavailable(Exception):
    """The service cannot be reached (or keeps refusing): the run stops."""


class BackendUsageError(Exception):
    """The service refuses every request of this run (unknown adapter, bad key, ...)."""


class BatchFailed(Exception):
    """This batch got no translations; the next one may."""


class BatchRejected(BatchFailed):
    """The service rejected the batch as invalid (4xx): some item in it is at fault, or,
    with ``param == "items"``, its size."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ServiceBusy(Exception):
    """503 (overloaded, still loading): the same request may succeed after ``retry_after``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Backend(Protocol):
    label: str

    async def translate(self, items: list[TranslateItem]) -> list[Translation]: ...


def server_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and a valid port; ValueError saying
    what is wrong otherwise (checked before any file is read)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        return min(max(float(value), 0.0), MAX_RETRY_WAIT_S)
    except ValueError:
        pass
    try:  # an HTTP date
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 1.0
    return min(max(when - time.time(), 0.0), MAX_RETRY_WAIT_S)


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    """(message, the request field at fault) from the service's error envelope."""
    try:
        body = msgspec.json.decode(response.content, type=ErrorResponse).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"HTTP {response.status_code}: {response.text[:200]}", None
    param = f" ({body.param})" if body.param else ""
    return f"HTTP {response.status_code} {body.type}{param}: {body.message}", body.param


def _checked(items: list[TranslateItem], answer: TranslateResponse) -> list[Translation]:
    if len(answer.translations) != len(items):
        raise BatchFailed(
            f"the service answered {len(answer.translations)} translations for {len(items)} texts"
        )
    return answer.translations


class HttpBackend:
    """POST /translate on a running service. Refused connections are retried here (a
    bounded number of times); 503 is raised as ServiceBusy for the caller to pace."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        adapter: str | None,
        retries: int,
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.adapter = adapter
        self.retries = retries
        self.label = f"service at {self.url}" + (f" (adapter {adapter})" if adapter else "")

    async def check_reachable(self, wait_s: float, say: Callable[[str], None]) -> None:
        """Before anything is read or written: fail at once if the service cannot be
        reached, and wait (up to ``wait_s``) while it is still loading its engine."""
        deadline = time.monotonic() + wait_s
        said = False
        while True:
            try:
                response = await self.client.get(self.url + "/ready")
            except httpx.TransportError as exc:
                message = f"cannot reach the translation service at {self.url}: {exc}"
                raise BackendUnavailable(message) from None
            if response.status_code != 503:  # ready, or a service without /ready
                return
            message, _ = _error_message(response)
            if "failed" in message or time.monotonic() > deadline:
                raise BackendUnavailable(f"the service at {self.url} is not ready: {message}")
            if not said:
                say(f"waiting for the service at {self.url} to finish loading ({message})")
                said = True
            await asyncio.sleep(_retry_after(response.headers.get("retry-after")))

    async def translate(self, items: list[TranslateItem]) -> list[Translation]:
        body = msgspec.json.encode(TranslateRequest(items=items, adapter=self.adapter))
        headers = {"content-type": "application/json"}
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.post(
                    self.url + "/translate", content=body, headers=headers
                )
                break
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt == self.retries:
                    message = f"cannot reach the translation service at {self.url}: {exc}"
                    raise BackendUnavailable(message) from None
                await asyncio.sleep(min(2.0**attempt, 10.0))  # a restarting service
            except httpx.TimeoutException as exc:
                raise BatchFailed(
                    f"no answer from {self.url} in time ({type(exc).__name__})"
                ) from None
            except httpx.TransportError as exc:
                raise BatchFailed(f"the request to {self.url} failed: {exc!r}") from None
        if response.status_code == 200:
            try:
                answer = msgspec.json.decode(response.content, type=TranslateResponse)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise BatchFailed(f"unreadable answer from the service: {exc}") from None
            return _checked(items, answer)
        message, param = _error_message(response)
        if response.status_code in (502, 503, 504):
            raise ServiceBusy(message, _retry_after(response.headers.get("retry-after")))
        if response.status_code in (401, 403, 404):
            raise BackendUsageError(message)
        if 400 <= response.status_code < 500:
            raise BatchRejected(message, param)
        raise BatchFailed(message)


class InProcessBackend:
    """The service's translator in this process (no server): for one-off offline runs."""

    def __init__(self, translator: object, *, adapter: str | None, label: str) -> None:
        self.translator = translator
        self.adapter = adapter
        self.label = label

    async def translate(self, items: list[TranslateItem]) -> list[Translation]:
        from service.errors import EngineDead, Overloaded, ServiceError, UnknownAdapter

        request = TranslateRequest(items=items, adapter=self.adapter)
        try:
            answer = await self.translator.translate(request)  # type: ignore[attr-defined]
        except EngineDead as exc:  # nothing more can be translated: the run stops
            raise BackendUnavailable(exc.message) from None
        except Overloaded as exc:
            raise ServiceBusy(exc.message, min(float(exc.retry_after), MAX_RETRY_WAIT_S)) from None
        except UnknownAdapter as exc:
            raise BackendUsageError(exc.message) from None
        except ServiceError as exc:
            raise BatchRejected(f"{exc.type}: {exc.message}", exc.param) from None
        return _checked(items, answer)


@contextlib.asynccontextmanager
async def http_backend(
    url: str,
    *,
    adapter: str | None,
    jobs: int,
    retries: int,
    timeout_s: float,
    say: Callable[[str], None],
) -> AsyncIterator[HttpBackend]:
    timeout = httpx.Timeout(timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        backend = HttpBackend(client, url, adapter=adapter, retries=retries)
        await backend.check_reachable(timeout_s, say)
        yield backend


BASE_ONLY_ADAPTER = "base-only"


@contextlib.asynccontextmanager
async def in_process_backend(
    *,
    registry: Path | None,
    adapter: str | None,
    base_model: str | None,
    engine: str | None,
    warn: Callable[[str], None],
) -> AsyncIterator[InProcessBackend]:
    """Open the service's translator here. Without ``registry`` it is the offline default:
    the packaged registry's ``zh-tw`` adapter on core.base_models.DEFAULT_OFFLINE_MODEL;
    where this installation ships no adapter, the base model alone (with a warning)."""
    from core.base_models import DEFAULT_OFFLINE_MODEL
    from core.settings import Settings
    from core.vllm_env import cpu_engine_defaults, engine_processes_die_with_us
    from service.translator import open_translator

    async with contextlib.AsyncExitStack() as stack:
        if registry is None:
            registry = packaged_registry()
            base_model = base_model or DEFAULT_OFFLINE_MODEL
            if registry is None:
                warn(
                    "warning: this installation ships no default adapter (core/default_adapter/"
                    f"{DEFAULT_ADAPTER}); translating with the base model {base_model} alone, "
                    "which does not translate usefully: use --server or --registry"
                )
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="polingo-base-")))
                await asyncio.to_thread(_identity_adapter, tmp, base_model)
                registry, adapter = tmp, BASE_ONLY_ADAPTER
            else:
                adapter = adapter or DEFAULT_ADAPTER
        try:
            settings = Settings.from_env(
                registry=registry, adapter=adapter, base_model=base_model, engine=engine
            )
        except ValueError as exc:
            raise BackendUsageError(f"the translator's settings: {exc}") from None
        if settings.engine == "vllm":
            cpu_engine_defaults()
        stack.enter_context(engine_processes_die_with_us())
        try:
            translator = await stack.enter_async_context(open_translator(settings))
        except ValueError as exc:
            raise BackendUsageError(str(exc)) from None
        except Exception as exc:  # the engine could not start: say why, write nothing
            message = f"the in-process translator could not start: {type(exc).__name__}: {exc}"
            raise BackendUnavailable(message) from None
        label = f"in-process translator ({translator.default_adapter} on {translator.base_model})"
        yield InProcessBackend(translator, adapter=None, label=label)


def _identity_adapter(root: Path, base_model: str) -> None:
    """A registry holding one LoRA adapter whose B matrices are zero, i.e. exactly the base
    model, because the translator serves adapters only."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.prompt import PromptContract
    from core.registry import DataSummary, Manifest, Registry
    from service.translator import resolve_base

    base_path = resolve_base(base_model, None)
    model = AutoModelForCausalLM.from_pretrained(str(base_path))
    lora = get_peft_model(model, LoraConfig(r=1, target_modules=["q_proj"], lora_alpha=1))
    registry = Registry(root)
    with registry.new_version(BASE_ONLY_ADAPTER) as (version, staging):
        lora.save_pretrained(str(staging))
        manifest = Manifest(
            name=BASE_ONLY_ADAPTER,
            version=version,
            base_model=base_model,
            contract=PromptContract(),
            data=DataSummary(fingerprint="none", source="none"),
            notes="identity adapter (LoRA B = 0): the base model alone",
        )
        registry.write_manifest(staging, manifest)
    registry.promote(BASE_ONLY_ADAPTER, reason="no packaged default adapter")
