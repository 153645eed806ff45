"""`polingo`: data, models, train, eval, serve, retrain, review, adapters.

One module of this package per subcommand, each a thin shell over a library function
that tests call directly; this one builds the parser and dispatches.
"""

from __future__ import annotations

import argparse
import sys

from cli import adapters, data, models, retrain, review, serve, train
from cli import eval as eval_
from cli.train import config_from_args
from core.settings import Environment, environment
from core.vllm_env import quiet_if_inherited

__all__ = ["build_parser", "config_from_args", "main"]

quiet_if_inherited()  # vLLM's engine processes import the main module again (spawn)

COMMANDS = (data, models, train, eval_, serve, retrain, review, adapters)


def build_parser(env: Environment | None = None) -> argparse.ArgumentParser:
    """The `polingo` parser; ``env`` (default: the process's POLINGO_* variables, read
    now) gives the defaults and travels on the parsed arguments as ``args.env``."""
    env = environment() if env is None else env
    parser = argparse.ArgumentParser(
        prog="polingo",
        description="Train, evaluate and serve translation adapters for gettext catalogs.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the warnings and logs of torch, transformers, Unsloth and vLLM too",
    )
    parser.set_defaults(env=env)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub, env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":  # serve sets its own from --log-level
        from core.vllm_env import quiet_third_party

        quiet_third_party(verbose=args.verbose)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from core.catalogs import CatalogError
    from core.registry import RegistryError

    try:
        return args.run(args)
    except (RegistryError, CatalogError, ValueError) as exc:  # bad input: settings, data, refs
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
