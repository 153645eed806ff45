"""`polingo serve`: run the translation service (service/serve.py). Its options are
generated from the core.settings.Settings fields and override the POLINGO_* variables;
``python -m cli.serve`` runs it alone (it imports nothing of training/)."""

from __future__ import annotations

import argparse
import sys

from cli.options import add_settings_options
from core.settings import Environment, Settings
from core.vllm_env import quiet_if_inherited

quiet_if_inherited()  # vLLM's engine processes import the main module again (spawn)


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    add_arguments(sub.add_parser("serve", help="run the translation service"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser, Settings)
    parser.add_argument(
        "--log-level",
        default="info",
        help="logging level (default info); debug also shows the warnings of torch and vLLM",
    )
    parser.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings, overridden by the options given."""
    import dataclasses

    names = (f.name for f in dataclasses.fields(Settings))
    return Settings.from_env(**{n: getattr(args, n, None) for n in names})


def run(args: argparse.Namespace) -> int:
    from core.vllm_env import quiet_third_party
    from service.serve import serve

    level = getattr(args, "log_level", "info")
    quiet_third_party(verbose=level.lower() == "debug")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"polingo serve: {exc}", file=sys.stderr)
        return 2
    return serve(settings, level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polingo serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # vLLM spawns processes: keep the guard
    sys.exit(main())
