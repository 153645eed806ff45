"""The Litestar application: ``create_app(settings, translator=None)``.

The engine is built outside the web framework: a lifespan task opens
``open_translator(settings)`` (an async context manager) in the background, so
/health and /ready answer while it loads, and closes it in ``finally`` at shutdown.
Tests may inject a ready Translator instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.controllers import OpsController, TranslationController
from service.errors import error_body
from service.metrics import Metrics
from service.schemas import ErrorResponse, Health
from service.settings import Settings
from service.translator import Translator, open_translator

access_log = logging.getLogger("polingo.access")
log = logging.getLogger("polingo.service")


class ServiceState:
    """What the handlers share: settings, metrics and (once loaded) the translator."""

    def __init__(self, settings: Settings, translator: Translator | None, metrics: Metrics) -> None:
        self.settings = settings
        self.translator = translator
        self.metrics = metrics
        self.failure: str | None = None

    def not_ready_reason(self) -> str:
        if self.failure:
            return f"the engine failed to start: {self.failure}"
        return "the engine is still loading"

    def health(self) -> Health:
        if self.translator is not None:
            return self.translator.health()
        engine = "vllm" if self.settings.engine == "vllm" else "transformers (fallback)"
        status = "failed" if self.failure else "starting"
        return Health(status, engine, self.settings.base_model or "", [])


def create_app(
    settings: Settings,
    translator: Translator | None = None,
    *,
    on_failure: Callable[[str], None] | None = None,
) -> Litestar:
    """The app. Without ``translator`` it opens one from ``settings`` in the background;
    ``on_failure`` is called with the reason if that fails (serve stops the server)."""
    metrics = translator.metrics if translator is not None else Metrics()
    service = ServiceState(settings, translator, metrics)

    @asynccontextmanager
    async def engine_lifespan(app: Litestar) -> AsyncIterator[None]:
        if service.translator is not None:  # injected: already open, owned by the caller
            yield
            return
        stop = asyncio.Event()

        async def hold_engine() -> None:
            try:
                async with open_translator(settings, metrics=metrics) as opened:
                    service.translator = opened
                    log.info(
                        "ready: engine %s, adapters %s",
                        opened.engine.kind,
                        opened.health().adapters,
                    )
                    await stop.wait()
            except Exception as exc:
                service.failure = f"{type(exc).__name__}: {exc}"
                log.exception("engine failed to start")
                if on_failure is not None:
                    on_failure(service.failure)
            finally:
                service.translator = None

        task = asyncio.create_task(hold_engine())
        try:
            yield
        finally:
            stop.set()
            with suppress(asyncio.CancelledError):
                await task

    return Litestar(
        route_handlers=[TranslationController, OpsController],
        state=State({"service": service}),
        lifespan=[engine_lifespan],
        exception_handlers={Exception: handle_error},
        middleware=[lambda app: AccessLog(app, metrics)],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="polingo translation service", version="1", path="/schema"
        ),
        logging_config=None,
    )


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    status, body, headers = error_body(exc)
    if status >= 500 and status != 503:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response(ErrorResponse(body), status_code=status, headers=headers)


class AccessLog:
    """One structured (JSON) log line and the request metrics per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            path = scope["path"] if scope.get("route_handler") else "other"
            state = scope.get("state", {})
            if state.get("cancelled"):
                status = 499
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(elapsed)
            record = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round(elapsed * 1000, 1),
                "client": (scope.get("client") or ["-"])[0],
            }
            if "items" in state:
                record["items"] = state["items"]
            access_log.info(json.dumps(record))
