"""`polingo review PATH...`: a local web page to accept, fix or reject drafts
(the app: review/cli.py's ``prepare``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.options import adapter_default
from core.defaults import DEFAULT_REGISTRY
from core.settings import Environment

DEFAULT_PORT = 8765


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    p = sub.add_parser("review", help="a local web page to accept, fix or reject drafts")
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
    p.add_argument("--adapter", default=adapter_default(env))
    p.add_argument(
        "--review-log",
        type=Path,
        default=None,
        help="where decisions are appended (default: review-log.jsonl beside the registry)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from review.cli import UsageError, prepare

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
