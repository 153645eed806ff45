"""Who may use the review page: anyone on loopback; beyond it, only with the API key.

The key is read as the service reads it (POLINGO_API_KEY, else the first line of
POLINGO_API_KEY_FILE: core.settings.environment), never from the command line. A browser
logs in once (POST /login) and keeps an HttpOnly, SameSite=Strict cookie holding an HMAC of the key,
not the key; scripts may send ``X-API-Key``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.errors import Unauthorized, UnsupportedMediaType

__all__ = ["COOKIE", "JsonOnly", "Unauthorized", "json_bodies_only", "require_key"]

COOKIE = "polingo_review"


class JsonOnly(UnsupportedMediaType):
    """A POST to the API whose body is not application/json."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_token(key: str) -> str:
    return hmac.new(key.encode(), b"polingo review session", hashlib.sha256).hexdigest()


def check_key(expected: str | None, given: str) -> bool:
    return expected is not None and hmac.compare_digest(expected.encode(), given.encode())


def require_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: with a key configured, every route but /login wants it."""
    key = connection.app.state.api_key
    if key is None or handler.opt.get("public"):
        return
    if check_key(key, connection.headers.get("x-api-key", "")):
        return
    cookie = connection.cookies.get(COOKIE, "")
    if hmac.compare_digest(cookie.encode(), session_token(key).encode()):
        return
    raise Unauthorized("this review server wants the API key: log in at /login")


def json_bodies_only(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: the API takes application/json only, which another web site's page cannot
    send to this server without a CORS preflight (that it never answers)."""
    if connection.scope["method"] != "POST" or handler.opt.get("public"):
        return
    media = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise JsonOnly(f"the body must be application/json, not {media or 'unnamed'}")
