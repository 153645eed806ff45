"""The one client of ``POST /adapters/reload``: `polingo retrain`, `polingo adapters
promote|rollback --service-url` and the Kubernetes CronJob's reload_replicas.py."""

from __future__ import annotations

import httpx
import msgspec

from service.schemas import ErrorResponse, ReloadResponse


class ReloadError(Exception):
    """The service could not be reached or refused the reload; ``status`` is the HTTP
    status (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def reload_service(
    url: str, api_key: str | None, *, timeout: float = 600.0, connect_retries: int = 2
) -> ReloadResponse:
    """Ask the service at ``url`` to serve each adapter's current registry version.
    Refused connections are retried by httpx's transport (a restarting pod)."""
    transport = httpx.HTTPTransport(retries=connect_retries)
    headers = {"X-API-Key": api_key or "", "Accept": "application/json"}
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            answer = client.post(url.rstrip("/") + "/adapters/reload", headers=headers)
    except httpx.HTTPError as exc:
        raise ReloadError(f"could not reach the service at {url}: {exc}") from None
    if answer.status_code != 200:
        try:
            message = msgspec.json.decode(answer.content, type=ErrorResponse).error.message
        except (msgspec.DecodeError, msgspec.ValidationError):
            message = answer.text[:300]
        raise ReloadError(f"reload answered {answer.status_code}: {message}", answer.status_code)
    try:
        return msgspec.json.decode(answer.content, type=ReloadResponse)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReloadError(f"unreadable reload answer from {url}: {exc}") from None
