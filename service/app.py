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
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.asgi import HeadAsGet
from core.settings import Settings
from service.controllers import OpsController, TranslationController
from service.errors import EngineDead, NotReady, UnsupportedMediaType, error_body
from service.metrics import Metrics
from service.schemas import ErrorBody, ErrorResponse, Health
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
        self.abandoned = False  # shut down before the engine finished loading

    def not_ready_reason(self) -> str:
        if self.failure:
            return f"the engine failed: {self.failure}"
        return "the engine is still loading"

    def health(self) -> Health:
        """Liveness: EngineDead (503) once the engine failed or died, so that a
        supervisor (Kubernetes' liveness probe) restarts the service."""
        if self.failure:
            raise EngineDead(self.not_ready_reason())
        if self.translator is not None:
            self.translator.check_alive()
            return self.translator.health()
        engine = "vllm" if self.settings.engine == "vllm" else "transformers (fallback)"
        return Health("starting", engine, self.settings.base_model or "", [])

    def ready(self) -> Translator:
        """The translator, or NotReady/EngineDead (503) saying why there is none."""
        if self.translator is None:
            if self.failure:
                raise EngineDead(self.not_ready_reason())
            raise NotReady(self.not_ready_reason(), retry_after=5)
        self.translator.check_alive()
        return self.translator


def create_app(
    settings: Settings,
    translator: Translator | None = None,
    *,
    on_failure: Callable[[str], None] | None = None,
    allowed_hosts: list[str] | None = None,
) -> Litestar:
    """The app. Without ``translator`` it opens one from ``settings`` in the background;
    ``on_failure`` is called with the reason if that fails or the engine dies later
    (serve stops the server). ``allowed_hosts``: the Host headers answered (others get
    400); None answers any (``Settings.host_allowlist`` gives serve's)."""
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
                    reason = await _until_stopped_or_dead(stop, opened)
                    if reason is not None:  # the engine died: stop, to be restarted
                        service.failure = reason
                        log.error("the engine died (%s): stopping the service", reason)
                        if on_failure is not None:
                            on_failure(f"the engine died: {reason}")
            except Exception as exc:
                service.failure = f"{type(exc).__name__}: {exc}"
                log.exception("engine failed to start")
                if on_failure is not None:
                    on_failure(f"the engine did not start: {service.failure}")
            finally:
                service.translator = None

        task = asyncio.create_task(hold_engine())
        try:
            yield
        finally:
            stop.set()
            if service.translator is None and not task.done():
                # Shut down while the engine loads: loading runs in a thread that cannot
                # be interrupted, so stop waiting for it (serve then exits at once).
                service.abandoned = True
                task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    app = Litestar(
        route_handlers=[TranslationController, OpsController],
        guards=[json_bodies_only],
        state=State({"service": service}),
        lifespan=[engine_lifespan],
        exception_handlers={Exception: handle_error},
        allowed_hosts=AllowedHostsConfig(allowed_hosts=allowed_hosts) if allowed_hosts else None,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="polingo translation service", version="1", path="/schema"
        ),
        logging_config=None,
    )
    # Around the whole app, not as route middleware: 404 and 405 answers (no route)
    # get their log line and metric too.
    app.asgi_handler = AccessLog(HeadAsGet(app.asgi_handler), metrics)
    return app


async def _until_stopped_or_dead(stop: asyncio.Event, translator: Translator) -> str | None:
    """Wait for shutdown (None) or for the engine to die (the reason)."""
    while not stop.is_set():
        reason = translator.dead_reason()
        if reason is not None:
            return reason
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return None


def json_bodies_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """415 for a request body that is not ``application/json``. Browsers send text/plain
    cross-origin without a CORS preflight; refusing it keeps web pages out."""
    if connection.scope["method"] not in ("POST", "PUT", "PATCH"):
        return
    headers = connection.headers
    if headers.get("content-length", "0") == "0" and not headers.get("transfer-encoding"):
        return  # no body (POST /adapters/reload)
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {media_type or 'unnamed'}",
            param="content-type",
        )


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    if request.scope.get("state", {}).get("disconnected"):
        # the client went away mid-request (Litestar: "client disconnected prematurely"):
        # its abort, not a server error; logged and counted as 499
        request.scope["state"]["cancelled"] = True
        return Response(
            ErrorResponse(ErrorBody("client disconnected", "client_disconnected", None, 499)),
            status_code=499,
        )
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
        state = scope.setdefault("state", {})

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                state["disconnected"] = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            # the route's template ("/schema/{path:path}"), never the raw path: one
            # label per route, and one ("other") for every path no route has
            routed = scope.get("route_handler") is not None
            path = (scope.get("path_template") or "other") if routed else "other"
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
