"""The review page's Litestar app: ``create_app(reviewer, api_key=None)``.

Pages are server-rendered Jinja templates (review/templates) with a small hand-written
script and style sheet (review/static); decisions go through the JSON API. Every error
has one envelope, ``{"error": {message, type, findings}}``, on the API, and a page
saying the same elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from core.asgi import AddHeaders, HeadAsGet
from core.errors import ApiError, ErrorBody, ErrorResponse
from review.auth import json_bodies_only, require_key
from review.controllers import LOGIN, ApiController, LoginController, PageController
from review.decisions import Reviewer
from review.entries import highlight

HERE = Path(__file__).parent


def create_app(
    reviewer: Reviewer, *, api_key: str | None = None, allowed_hosts: list[str] | None = None
) -> Litestar:
    """``api_key``: wanted on every request (the server is bound beyond loopback);
    ``allowed_hosts``: the Host headers answered (a loopback server names its own, so a
    DNS-rebinding page cannot reach it); None answers any."""

    def engine_setup(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters["rst"] = highlight

    app = Litestar(
        route_handlers=[
            PageController,
            ApiController,
            LoginController,
            create_static_files_router(path="/static", directories=[HERE / "static"]),
        ],
        guards=[require_key, json_bodies_only],
        state=State({"reviewer": reviewer, "api_key": api_key}),
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=engine_setup
        ),
        allowed_hosts=AllowedHostsConfig(allowed_hosts=allowed_hosts) if allowed_hosts else None,
        exception_handlers={Exception: handle_error},
        openapi_config=None,
        logging_config=None,
    )
    # another site's page may not frame this one (clickjacking its Accept/Reject buttons)
    frames = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
    app.asgi_handler = AddHeaders(HeadAsGet(app.asgi_handler), frames)
    return app


def error_of(exc: Exception) -> tuple[int, ErrorBody]:
    """The one mapping of exceptions to (status, envelope)."""
    if isinstance(exc, ApiError):  # the review's own, the key's and the media type's
        return exc.status, exc.body()
    if isinstance(exc, RecursionError):  # msgspec on "[[[[..." nested past Python's limit
        message = "the body is nested too deeply"
        return 422, ErrorBody(message=message, type="invalid_request", code=422)
    if isinstance(exc, ValidationException):
        details = exc.extra if isinstance(exc.extra, list) else []
        first = details[0] if details and isinstance(details[0], dict) else {}
        message = first.get("message") or str(exc.detail)
        where = first.get("key")
        text = f"{where}: {message}" if where and where != "data" else message
        return 422, ErrorBody(message=text, type="invalid_request", code=422)
    if isinstance(exc, HTTPException):
        status = 422 if exc.status_code == 400 else exc.status_code
        return status, ErrorBody(message=str(exc.detail), type="http_error", code=status)
    message = f"internal error: {type(exc).__name__}"
    return 500, ErrorBody(message=message, type="internal_error", code=500)


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, body = error_of(exc)
    if status == 500:
        import logging

        logging.getLogger("polingo.review").error("%s failed", request.url.path, exc_info=exc)
    if request.url.path.startswith("/api/"):
        return Response(ErrorResponse(body), status_code=status)
    if status == 401:
        return Redirect(LOGIN)
    return Template("error.html", context={"error": body, "status": status}, status_code=status)
