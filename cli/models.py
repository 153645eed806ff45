"""`polingo models list|prepare`: the packaged base-model aliases."""

from __future__ import annotations

import argparse
import sys

from core.settings import Environment


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    models = sub.add_parser("models", help="base models").add_subparsers(
        dest="action", required=True
    )
    models.add_parser("list", help="the packaged offline aliases")
    prepare = models.add_parser("prepare", help="convert a packaged alias (or check a model) once")
    prepare.add_argument("name", nargs="?", default="gemma3-270m")
    for p in models.choices.values():
        p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.base_models import BaseModelError, list_aliases, resolve_base_model

    if args.action == "list":
        for alias in list_aliases():
            print(alias)
        return 0
    try:
        print(resolve_base_model(args.name))
    except BaseModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
