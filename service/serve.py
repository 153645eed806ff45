"""``polingo serve``: run the translation service under uvicorn.

cli/main.py wires the subcommand to ``add_arguments`` and ``run``; ``python -m
service.serve`` runs it alone (it imports nothing of training/). Options override
POLINGO_* environment variables. Without a registry it serves the packaged default
adapter, as translate-po does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from core.settings import ENGINES, Settings
from core.vllm_env import (
    cpu_engine_defaults,
    engine_processes_die_with_us,
    quiet_if_inherited,
    quiet_third_party,
)

quiet_if_inherited()  # vLLM's engine processes import the main module again (spawn)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to bind (POLINGO_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (POLINGO_PORT, default 8000)")
    parser.add_argument(
        "--registry",
        type=Path,
        help="adapter registry folder (POLINGO_REGISTRY; default: the packaged registry "
        "with the project's default adapter)",
    )
    parser.add_argument(
        "--allowed-hosts", metavar="HOSTS",
        help="comma-separated Host headers answered besides loopback's (POLINGO_ALLOWED_HOSTS; "
        "bound to loopback: only 127.0.0.1, localhost, [::1]; beyond it, unset: any)",
    )  # fmt: skip
    parser.add_argument("--adapter", help="default adapter NAME (POLINGO_ADAPTER)")
    parser.add_argument(
        "--base-model",
        help="base model alias, folder or hub id; default: the manifest's (POLINGO_BASE_MODEL)",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, help="generation engine (POLINGO_ENGINE, default vllm)"
    )
    parser.add_argument(
        "--api-key",
        help="key for POST /adapters/reload (POLINGO_API_KEY). A command-line value is "
        "visible to every user in `ps`: prefer the variable or --api-key-file",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="FILE",
        help="read the key from FILE's first line (POLINGO_API_KEY_FILE), e.g. a mounted secret",
    )
    parser.add_argument("--max-batch", type=int, help="most texts per request (POLINGO_MAX_BATCH)")
    parser.add_argument("--max-queue", type=int, help="most texts in flight (POLINGO_MAX_QUEUE)")
    parser.add_argument(
        "--tensor-parallel-size", type=int, help="GPUs for vLLM (POLINGO_TENSOR_PARALLEL_SIZE)"
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        help="GPU memory share for vLLM (POLINGO_GPU_MEMORY_UTILIZATION)",
    )
    parser.add_argument(
        "--max-num-seqs", type=int,
        help="sequences vLLM batches at once (POLINGO_MAX_NUM_SEQS; default 256 on a GPU, "
        "64 on a CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--max-num-batched-tokens", type=int,
        help="tokens vLLM computes in one step (POLINGO_MAX_NUM_BATCHED_TOKENS; default "
        "16384 on a GPU, vLLM's own on a CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--max-lora-rank", type=int, help="largest adapter rank (POLINGO_MAX_LORA_RANK, default 64)"
    )
    parser.add_argument(
        "--max-loras", type=int,
        help="adapters resident in one batch (POLINGO_MAX_LORAS, default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--prefix-caching", action=argparse.BooleanOptionalAction, default=None,
        help="reuse the KV cache of the prompt's shared instruction part "
        "(POLINGO_PREFIX_CACHING, default on)",
    )  # fmt: skip
    parser.add_argument(
        "--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
        help="capture CUDA graphs for decoding; off starts faster, runs slower "
        "(POLINGO_CUDA_GRAPHS, default on)",
    )  # fmt: skip
    parser.add_argument(
        "--watch-interval", type=float, dest="watch_interval_s",
        help="seconds between registry polls; 0: reload by POST only (POLINGO_WATCH_INTERVAL)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level",
        default="info",
        help="logging level (default info); debug also shows the warnings of torch and vLLM",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = (
        "host", "port", "allowed_hosts", "registry", "adapter", "base_model", "engine", "api_key",
        "api_key_file", "max_batch", "max_queue", "tensor_parallel_size",
        "gpu_memory_utilization", "watch_interval_s", "max_num_seqs",
        "max_num_batched_tokens", "max_lora_rank", "max_loras", "prefix_caching", "cuda_graphs",
    )  # fmt: skip
    return Settings.from_env(**{n: getattr(args, n, None) for n in names})


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


def run(args: argparse.Namespace) -> int:
    level = getattr(args, "log_level", "info")
    quiet_third_party(verbose=level.lower() == "debug")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"polingo serve: {exc}", file=sys.stderr)
        return 2
    assert settings.registry is not None  # Settings refuses a missing one
    if not settings.registry.is_dir():
        print(
            f"polingo serve: registry {settings.registry} is not a folder: train an adapter "
            "into it (polingo train) or leave --registry/POLINGO_REGISTRY out to serve "
            "the packaged default adapter",
            file=sys.stderr,
        )
        return 2
    configure_logging(level)
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

    def stop(reason: str) -> None:  # the engine could not start: exit rather than idle
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polingo serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # vLLM spawns processes: keep the guard
    sys.exit(main())
