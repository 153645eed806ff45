"""Run the translation service under uvicorn: what ``polingo serve`` (cli/serve.py, its
options generated from the Settings fields) does once its settings are read. Without a
registry it serves the packaged default adapter, as translate-po does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time

from core.settings import Settings
from core.vllm_env import cpu_engine_defaults, engine_processes_die_with_us


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "polingo.access" and message.startswith("{"):
            entry.update(json.loads(message))
        else:
            entry["message"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("polingo", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def serve(settings: Settings, log_level: str = "info") -> int:
    """Serve under uvicorn until stopped: 0, or 1 when the engine could not start or died; 2 when
    the registry is not a folder. JSON logs at ``log_level`` on stderr."""
    assert settings.registry is not None  # Settings refuses a missing one
    if not settings.registry.is_dir():
        print(
            f"polingo serve: registry {settings.registry} is not a folder: train an adapter "
            "into it (polingo train) or leave --registry/POLINGO_REGISTRY out to serve "
            "the packaged default adapter",
            file=sys.stderr,
        )
        return 2
    configure_logging(log_level)
    if settings.engine == "vllm":
        cpu_engine_defaults()
    with engine_processes_die_with_us():
        return _serve(settings)


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.timeouts import timed_protocol

    failures: list[str] = []
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:  # the engine did not start or died: exit rather than idle
        failures.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_failure=stop, allowed_hosts=settings.host_allowlist())
    # uvicorn's own access log is off: the app writes one structured line per request.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutting down
        server.run()
    if app.state.service.abandoned:
        # Stopped while the engine loaded: its loading thread cannot be interrupted and
        # would hold the exit for a minute; the reaper stops the engine processes.
        print("polingo serve: stopped while the engine was loading", file=sys.stderr)
        sys.stderr.flush()
        os._exit(0)
    if failures:
        print(f"polingo serve: stopped: {failures[0]}", file=sys.stderr)
        return 1
    return 0
