"""`polingo adapters list|promote|rollback`: the registry's versions and which is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.options import (
    adapter_default,
    add_reload_options,
    notify_service,
    registry_default,
    reload_key,
)
from core.registry import Registry
from core.settings import Environment


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    adapters = sub.add_parser("adapters", help="list, promote or roll back adapter versions")
    adapters.add_argument("--registry", type=Path, default=registry_default(env))
    adapters.set_defaults(run=run)
    act = adapters.add_subparsers(dest="action", required=True)
    act.add_parser("list", help="every version, its metrics, and which is current")
    promote = act.add_parser("promote", help="make NAME@VERSION the current version")
    promote.add_argument("ref")
    rollback = act.add_parser("rollback", help="go back to the previously current version")
    rollback.add_argument("name", nargs="?", default=adapter_default(env))
    for p in (promote, rollback):
        add_reload_options(p, env)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    if args.action == "list":
        return 1 if print_versions(registry) else 0
    if args.action == "promote":
        name, version = registry.resolve(args.ref)
        registry.promote(f"{name}@{version}", reason="polingo adapters promote")
        print(f"{name}@{version} is current")
    else:
        name = args.name
        version = registry.rollback(name)
        print(f"{name}@{version} is current again")
    if args.service_url:
        return notify_service(args.service_url, reload_key(args))
    return 0


def print_versions(registry: Registry) -> int:
    """One line per version: current mark, base, parent, headline metrics, date. A
    version whose manifest cannot be read is named on stderr and the rest listed;
    returns how many could not be read."""
    names = registry.names()
    if not names:
        print(f"no adapters in {registry.root}")
    bad = 0
    for name in names:
        current = registry.current(name)
        for version in registry.versions(name):
            try:
                m = registry.manifest(f"{name}@{version}")
            except (OSError, ValueError) as exc:
                print(f"! {name}@{version}  unreadable manifest: {exc}", file=sys.stderr)
                bad += 1
                continue
            mark = "*" if version == current else " "
            metrics = "  ".join(
                f"{k}={v:g}"
                for k, v in m.metrics.items()
                if k in ("chrf", "bleu_zh", "markup_kept")
            )
            print(
                f"{mark} {name}@{version}  base={m.base_model}  "
                f"parent={m.parent or '-'}  {metrics}  {m.created_at}"
            )
    return bad
