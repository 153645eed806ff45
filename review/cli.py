"""What `polingo review PATH...` (cli/review.py) serves: the review page over the
catalogs at PATH.

``prepare(args)`` checks the input and builds the Reviewer and the app; the command
serves it under uvicorn on 127.0.0.1 unless ``--host`` says otherwise, and any other
address needs the API key (POLINGO_API_KEY or POLINGO_API_KEY_FILE).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.catalogs import find_catalogs
from core.defaults import DEFAULT_REGISTRY, packaged_registry
from core.registry import RegistryError
from core.settings import environment
from review.decisions import Reviewer
from review.entries import MemoryContext
from review.log import default_log_path

if TYPE_CHECKING:  # `polingo train` builds this parser on machines without the web stack
    from litestar import Litestar


class UsageError(Exception):
    """Bad input: `polingo review` prints it and exits 2."""


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


def prepare(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Litestar:
    """The review app for `polingo review`'s options (cli/review.py); UsageError for bad
    input. ``environ`` stands in for the process's environment (tests)."""
    from review.app import create_app
    from review.auth import is_loopback

    paths = catalogs(args.paths)
    env = environment(environ)
    try:
        key = env.key()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    loopback = is_loopback(args.host)
    if not loopback and not key:
        raise UsageError(
            f"--host {args.host} is reachable beyond this machine: set POLINGO_API_KEY "
            "(or POLINGO_API_KEY_FILE) so that only translators with the key can write"
        )
    named = args.registry or env.registry
    memory = memory_of(named, args.adapter)
    # beside the registry named (var/ by default), never inside the installed package
    log_path = args.review_log or default_log_path(named or DEFAULT_REGISTRY)
    reviewer = Reviewer(paths, log_path, memory)
    hosts = None
    if loopback:  # only this machine's names: a DNS-rebinding page gets 400
        names = {"127.0.0.1", "localhost", "[::1]", args.host}
        hosts = [h for n in sorted(names) for h in (n, f"{n}:{args.port}")]
    return create_app(reviewer, api_key=None if loopback else key, allowed_hosts=hosts)
