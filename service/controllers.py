"""HTTP handlers: each turns a request into one Translator call and back."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from service.errors import ServiceError, Unauthorized
from service.metrics import CONTENT_TYPE
from service.schemas import (
    AdapterList,
    ErrorResponse,
    Health,
    ReloadResponse,
    TranslateRequest,
    TranslateResponse,
)
from service.translator import Translator

TRANSLATE = "/translate"
ADAPTERS = "/adapters"
RELOAD = "/adapters/reload"
HEALTH = "/health"
READY = "/ready"
METRICS = "/metrics"

T = TypeVar("T")


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    return {
        c: ResponseSpec(ErrorResponse, description="error envelope", generate_examples=False)
        for c in codes
    }


class ClientDisconnected(ServiceError):
    status = 499
    type = "client_disconnected"


def provide_translator(state: State) -> Translator:
    return state.service.ready()


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; cancel it (so the engine aborts its generation) if the client goes away."""
    job = asyncio.ensure_future(work)

    async def disconnected() -> None:
        # The body has been read, so the next ASGI message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        job.cancel()
        raise
    finally:
        watcher.cancel()
    if job.done():
        return job.result()
    job.cancel()
    request.state.cancelled = True
    raise ClientDisconnected("client disconnected; generation aborted")


class TranslationController(Controller):
    dependencies = {"translator": Provide(provide_translator, sync_to_thread=False)}  # noqa: RUF012

    @post(
        TRANSLATE, operation_id="translate", status_code=200, responses=_errors(404, 413, 422, 503)
    )
    async def translate(
        self, request: Request, data: TranslateRequest, translator: Translator
    ) -> TranslateResponse:
        """Translate a batch of texts with an adapter (the default one's current version)."""
        request.state.items = len(data.items)
        return await until_disconnect(request, translator.translate(data))

    @get(ADAPTERS, operation_id="listAdapters", responses=_errors(503))
    async def list_adapters(self, translator: Translator) -> AdapterList:
        """Adapter versions in the registry: base model, metrics, which are loaded and current."""
        return translator.adapters()

    @post(RELOAD, operation_id="reloadAdapters", status_code=200, responses=_errors(401, 503))
    async def reload(
        self,
        state: State,
        translator: Translator,
        api_key: Annotated[str | None, Parameter(header="X-API-Key", required=False)] = None,
    ) -> ReloadResponse:
        """Serve each adapter's current registry version; a broken one is refused, the old stays."""
        expected = state.service.settings.api_key
        if not expected:
            raise Unauthorized("reload is disabled: the service has no API key (POLINGO_API_KEY)")
        if not api_key or not hmac.compare_digest(api_key.encode(), expected.encode()):
            raise Unauthorized("missing or wrong X-API-Key")
        return await translator.reload()


class OpsController(Controller):
    @get(HEALTH, operation_id="health", responses=_errors(503))
    async def health(self, state: State) -> Health:
        """Liveness, and which engine serves; 503 once the engine failed or died."""
        return state.service.health()

    @get(READY, operation_id="ready", responses=_errors(503))
    async def ready(self, state: State) -> dict[str, str]:
        """200 once the engine and the default adapter are loaded, 503 before and once
        the engine died."""
        provide_translator(state)
        return {"status": "ready"}

    @get(METRICS, operation_id="metrics", media_type=CONTENT_TYPE)
    async def metrics(self, state: State) -> Response[Any]:
        """Prometheus metrics."""
        if state.service.translator is not None:
            state.service.metrics.engine_pending.set(state.service.translator.engine.pending())
        # as a header: a text/* media_type would get a second "; charset=utf-8" appended
        return Response(state.service.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
