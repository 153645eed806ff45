"""Errors of the translation service (core.errors' family, plus the service's own kinds)
and the one mapping of exceptions to HTTP answers.

The translator raises these; the web layer turns any exception into the envelope
``{"error": {message, type, param, code}}`` (core.errors.ErrorResponse) through
``error_body`` and nothing else.
"""

from __future__ import annotations

import re

from core.errors import (
    ApiError,
    ErrorBody,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

# the shared kinds, under the names the service has always used
__all__ = [
    "AdapterLoadError",
    "InvalidRequest",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "ServiceError",
    "UnknownAdapter",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "validation_param",
]

ServiceError = ApiError


class UnknownAdapter(ApiError, status=404, type="unknown_adapter"):
    """The request names an adapter (or version) the registry does not have."""


class Overloaded(ApiError, status=503, type="overloaded"):
    """The queue is full: the client retries after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(Overloaded, type="not_ready"):
    """The engine is still loading."""


class EngineDead(ApiError, status=503, type="engine_dead"):
    """The generation engine died (its core process ended): nothing can be translated
    until the service restarts; /health and /ready answer this too, and serve exits."""


class AdapterLoadError(ApiError, status=422, type="adapter_error"):
    """An adapter version that cannot be served (bad files, other base model, warm-up failed)."""


# msgspec names the failing field as "... - at `$.items[2].text`"
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")


def validation_param(message: str) -> tuple[str, str | None]:
    """Split a msgspec validation message into (message, field path)."""
    match = _MSGSPEC_PATH.search(message)
    if not match:
        return message, None
    return message[: match.start()], match.group(1) or None


def error_body(exc: BaseException) -> tuple[int, ErrorBody, dict[str, str]]:
    """(status, envelope body, extra headers) for any exception. The one mapping."""
    # Imported here so that the translator can use this module without Litestar.
    from litestar.exceptions import HTTPException, ValidationException

    if isinstance(exc, ApiError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else {}
        return exc.status, exc.body(), headers
    if isinstance(exc, RecursionError):  # msgspec on "[[[[..." nested past Python's limit
        message = "request body is not valid JSON: nested too deeply"
        return 422, ErrorBody(message, "invalid_request", None, 422), {}
    if isinstance(exc, ValidationException):
        # Litestar's body validation: extra holds [{"message", "key", "source"}]
        details = exc.extra if isinstance(exc.extra, list) else []
        first = details[0] if details and isinstance(details[0], dict) else {}
        param = first.get("key")
        message = first.get("message") or exc.detail
        if param == "data":  # the body as a whole (e.g. an unknown field)
            param = None
            if message == "'data'":  # Litestar's KeyError text for a missing body
                message = "the request has no body: send a JSON object"
        if param:
            message = f"{param}: {message}"
        return 422, ErrorBody(message, "invalid_request", param, 422), {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        kind = {413: "payload_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            status, "http_error"
        )
        message = str(exc.detail)
        if status == 400:  # Litestar reports undecodable bodies as 400; keep them 422 like the rest
            status, kind = 422, "invalid_request"
            message = f"request body is not valid JSON: {message}"
        return status, ErrorBody(message, kind, None, status), dict(exc.headers or {})
    return 500, ErrorBody("internal server error", "internal_error", None, 500), {}
