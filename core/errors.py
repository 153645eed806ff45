"""The one error family of polingo's HTTP APIs (the service and the review page) and its
one JSON envelope, ``{"error": {message, type, param, code[, findings]}}``.

An ``ApiError`` carries its HTTP status and a machine-readable type; each web layer
turns it (and the web framework's own exceptions) into ``ErrorResponse`` in one mapping
function (service/errors.py ``error_body``, review/app.py ``error_of``).
"""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: int = 400
    # what the catalog's checks reported (the review page); left out of the JSON when unset
    findings: list[str] | msgspec.UnsetType = msgspec.UNSET


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    """A request that cannot be answered: ``message`` for people, ``param`` the request
    field at fault, ``findings`` the checks' reports. A subclass states its status and
    type as class arguments: ``class Gone(ApiError, status=410, type="gone")``."""

    status = 500
    type = "internal_error"

    def __init_subclass__(cls, status: int | None = None, type: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if type is not None:
            cls.type = type

    def __init__(
        self, message: str, findings: list[str] | None = None, *, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.findings = findings or []

    def body(self) -> ErrorBody:
        """The envelope's body for this error."""
        findings = self.findings or msgspec.UNSET
        return ErrorBody(self.message, self.type, self.param, self.status, findings)


class InvalidRequest(ApiError, status=422, type="invalid_request"):
    """The request's content cannot be used (a field, a decision, a translation)."""


class Unauthorized(ApiError, status=401, type="unauthorized"):
    """The request lacks the API key (or the review page's session cookie)."""


class NotFound(ApiError, status=404, type="not_found"):
    """What the request names does not exist."""


class Conflict(ApiError, status=409, type="conflict"):
    """What the request acts on changed since the client saw it, or another program holds it."""


class PayloadTooLarge(ApiError, status=413, type="payload_too_large"):
    """The body is larger than the server takes."""


class UnsupportedMediaType(ApiError, status=415, type="unsupported_media_type"):
    """The body is not of the media type the endpoint takes (application/json)."""
