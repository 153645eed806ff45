"""`polingo review PATH...`: serve the review page over the catalogs at PATH.

``prepare(args)`` checks the input and builds the Reviewer and the app (tests call it);
``run(args)`` serves it under uvicorn on 127.0.0.1 unless ``--host`` says otherwise,
and any other address needs the API key (POLINGO_API_KEY or POLINGO_API_KEY_FILE).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.catalogs import find_catalogs
from core.defaults import DEFAULT_ADAPTER, DEFAULT_REGISTRY, packaged_registry
from core.registry import RegistryError
from review.decisions import Reviewer
from review.entries import MemoryContext
from review.log import default_log_path

if TYPE_CHECKING:  # `polingo train` builds this parser on machines without the web stack
    from litestar import Litestar

DEFAULT_PORT = 8765


class UsageError(Exception):
    """Bad input: `polingo review` prints it and exits 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".po files or folders")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any other wants the API key "
        "(POLINGO_API_KEY or POLINGO_API_KEY_FILE)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help=f"adapter registry whose translation memory is shown (POLINGO_REGISTRY, default "
        f"{DEFAULT_REGISTRY}, else the packaged one)",
    )
    p.add_argument("--adapter", default=os.environ.get("POLINGO_ADAPTER", DEFAULT_ADAPTER))
    p.add_argument(
        "--review-log",
        type=Path,
        default=None,
        help="where decisions are appended (default: review-log.jsonl beside the registry)",
    )


def catalogs(paths: list[Path]) -> list[Path]:
    """The catalogs named: .po files as given, folders searched; UsageError otherwise."""
    for path in paths:
        if path.is_file() and path.suffix != ".po":
            raise UsageError(f"{path}: not a .po file or a folder of them")
    found, missing = find_catalogs(paths)
    if missing:
        raise UsageError(f"{missing[0]}: give .po files or folders of them")
    if not found:
        raise UsageError(f"no .po files in {', '.join(map(str, paths))}")
    return found


def memory_of(registry: Path | None, adapter: str) -> MemoryContext:
    """The translation memory of ``adapter`` in ``registry``; with none named, in
    var/registry, else the packaged default adapter's."""
    candidates = [registry] if registry else [DEFAULT_REGISTRY, packaged_registry()]
    problem = ""
    for root in candidates:
        if root is None:
            continue
        try:
            return MemoryContext.from_registry(root, adapter)
        except (RegistryError, ValueError, OSError) as exc:
            problem = str(exc)
    raise UsageError(f"no translation memory for {adapter!r}: {problem}")


def prepare(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Litestar:
    from review.app import create_app
    from review.auth import api_key_from_env, is_loopback

    paths = catalogs(args.paths)
    try:
        key = api_key_from_env(environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    loopback = is_loopback(args.host)
    if not loopback and not key:
        raise UsageError(
            f"--host {args.host} is reachable beyond this machine: set POLINGO_API_KEY "
            "(or POLINGO_API_KEY_FILE) so that only translators with the key can write"
        )
    env = os.environ if environ is None else environ
    named = args.registry or (
        Path(env["POLINGO_REGISTRY"]) if env.get("POLINGO_REGISTRY") else None
    )
    memory = memory_of(named, args.adapter)
    # beside the registry named (var/ by default), never inside the installed package
    log_path = args.review_log or default_log_path(named or DEFAULT_REGISTRY)
    reviewer = Reviewer(paths, log_path, memory)
    hosts = None
    if loopback:  # only this machine's names: a DNS-rebinding page gets 400
        names = {"127.0.0.1", "localhost", "[::1]", args.host}
        hosts = [h for n in sorted(names) for h in (n, f"{n}:{args.port}")]
    return create_app(reviewer, api_key=None if loopback else key, allowed_hosts=hosts)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        app = prepare(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reviewer = app.state.reviewer
    overall = reviewer.overall()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"reviewing {len(reviewer.files)} catalogs, {overall.total - overall.done} entries to "
        f"review; decisions go to {reviewer.log_path}\nopen http://{host}:{args.port}/",
        file=sys.stderr,
    )
    from core.settings import Settings
    from service.timeouts import timed_protocol

    limits = Settings()  # the service's read timeouts (a public port needs them here too)
    http = timed_protocol(limits.header_timeout_s, limits.body_timeout_s)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", http=http)
    return 0
