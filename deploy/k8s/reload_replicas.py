"""Tell every replica of the service to reload its adapters, and check that each one
now serves the registry's current version.

Run by the retrain CronJob after `polingo retrain` (retrain-cronjob.yaml), where
``--service`` is the headless Service whose DNS name resolves to every ready pod:

    python3 reload_replicas.py --service polingo-replicas --port 8000 \
        --registry /var/lib/polingo/registry --adapter NAME

The API key is read from POLINGO_API_KEY (never a command-line argument). Exit status:
0 when every replica answered and serves NAME@CURRENT, 1 otherwise (each failing
replica is named on stderr), 2 for a usage problem.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time
from pathlib import Path

from clients.reload import ReloadError, reload_service
from core.registry import Registry
from core.settings import environment


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reload_replicas", description=__doc__.splitlines()[0])
    p.add_argument("--service", required=True, help="DNS name resolving to every replica")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--registry", type=Path, required=True, help="the shared adapter registry")
    p.add_argument("--adapter", default=environment().adapter, help="adapter NAME")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per reload call")
    p.add_argument("--attempts", type=int, default=3, help="tries per replica")
    return p


def resolve_replicas(service: str, port: int) -> list[str]:
    """Every distinct address the name resolves to (one per ready pod for a headless Service)."""
    infos = socket.getaddrinfo(service, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def check_replica(
    address: str, port: int, api_key: str, expected: str, timeout: float, attempts: int
) -> str | None:
    """None when the replica serves ``expected`` after reloading, else why not."""
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    problem = "not tried"
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(5 * attempt, 30))
        try:
            answer = reload_service(f"http://{host}:{port}", api_key, timeout=timeout)
        except ReloadError as exc:
            problem = str(exc)
            if exc.status in (401, 403, 404):  # retrying will not change these
                return problem
            continue
        if expected in answer.loaded:
            return None
        name = expected.partition("@")[0]
        error = answer.errors.get(name) or answer.errors.get(expected)
        problem = f"serves {', '.join(answer.loaded) or 'nothing'}, not {expected}" + (
            f" ({error})" if error else ""
        )
    return problem


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    api_key = environment().api_key
    if not api_key:
        print("error: POLINGO_API_KEY is not set", file=sys.stderr)
        return 2
    if not args.adapter:
        print("error: no adapter: pass --adapter or set POLINGO_ADAPTER", file=sys.stderr)
        return 2
    current = Registry(args.registry).current(args.adapter)
    if current is None:
        print(f"error: adapter {args.adapter!r} has no CURRENT in {args.registry}", file=sys.stderr)
        return 2
    expected = f"{args.adapter}@{current}"
    try:
        replicas = resolve_replicas(args.service, args.port)
    except socket.gaierror as exc:
        print(f"error: {args.service!r} resolves to no replica: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for address in replicas:
        problem = check_replica(
            address, args.port, api_key, expected, args.timeout, max(1, args.attempts)
        )
        if problem is None:
            print(f"{address}: serves {expected}")
        else:
            failed += 1
            print(f"error: replica {address}:{args.port}: {problem}", file=sys.stderr)
    print(f"{len(replicas) - failed}/{len(replicas)} replicas serve {expected}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
