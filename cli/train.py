"""`polingo train`: fine-tune a LoRA adapter on a .po tree (options from TrainConfig)."""

from __future__ import annotations

import argparse
import shlex
import sys

from cli.options import adapter_default, add_config_options, config_values, registry_default
from core.prompt import CONTRACT_PRESETS
from core.settings import Environment
from training.config import TrainConfig


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    p = sub.add_parser("train", help="fine-tune a LoRA adapter on a .po tree")
    defaults = {"adapter": adapter_default(env), "registry": registry_default(env)}
    add_config_options(p, TrainConfig, defaults)
    p.add_argument(
        "--eval",
        dest="eval_limit",
        type=int,
        default=None,
        metavar="N",
        help="after training, score N held-out pairs (the service's engine) into the manifest",
    )
    p.add_argument("--promote", action="store_true", help="make the new version current")
    p.add_argument(
        "--no-protect-markup",
        dest="contract",
        action="store_const",
        const=CONTRACT_PRESETS["raw"],
        help="train on raw markup instead of numbered placeholders (= --contract raw)",
    )
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that `polingo train`'s options give (add_config_options)."""
    command = "polingo " + shlex.join(sys.argv[1:])
    return TrainConfig(**config_values(args, TrainConfig), command=command)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """`polingo train`: bad settings or data raise ValueError, which main reports."""
    from core.base_models import BaseModelError
    from core.registry import Registry
    from training.data import CatalogError
    from training.train import train

    try:
        result = train(config_from_args(args))
    except (BaseModelError, CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = Registry(args.registry)
    ref = f"{args.adapter}@{result.version}"
    if args.eval_limit:
        from training.evaluate import evaluate

        for result in evaluate(registry, ref, args.data, limit=args.eval_limit).values():
            print(f"{ref} {result.label}: {result.metrics}  (copy source: {result.baseline})")
    if args.promote or registry.current(args.adapter) is None:
        registry.promote(
            ref, reason="first version" if not args.promote else "polingo train --promote"
        )
    print(ref)
    return 0
