"""`polingo retrain`: new docs -> new adapter version -> evaluation gate -> promote
(the policy: training/retrain.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import options
from core.prompt import CONTRACT_PRESETS
from core.settings import DECODING_FIELDS, Environment, Settings
from training.config import contract_option


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    p = sub.add_parser("retrain", help="train a new version when new translations land")
    p.add_argument("--docs", type=Path, required=True, help="the updated .po tree")
    p.add_argument("--adapter", default=options.adapter_default(env))
    p.add_argument("--registry", type=Path, default=options.registry_default(env))
    p.add_argument(
        "--min-changes", type=int, default=50, help="new+changed pairs needed to retrain"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.5,
        help="chrF points the candidate may lose on each split (the document split "
        "decides; the pair split must not lose more either)",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        default=200,
        help="pairs of each held-out split scored for each version (0: all)",
    )
    # the gate's evaluation: the service's decoding settings unless these say otherwise
    options.add_settings_options(p, Settings, only=DECODING_FIELDS)
    p.add_argument("--from", dest="start", choices=["current", "base"], default="current")
    p.add_argument(
        "--contract",
        type=contract_option,
        default=None,
        metavar="{" + ",".join(CONTRACT_PRESETS) + "}",
        help="train the new version with this prompt contract (default: the current "
        "version's; with another one, use --from base)",
    )
    p.add_argument("--epochs", type=float, default=None, help="default: the current version's")
    p.add_argument(
        "--learning-rate", type=float, default=None, help="default: the current version's"
    )
    p.add_argument(
        "--review-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="also train on the translations kept or corrected on the review page "
        "(polingo review's review-log.jsonl); the catalogs win where both translate a text",
    )
    p.add_argument(
        "--updates",
        type=Path,
        default=None,
        metavar="PATH",
        help="also train the update mode on these update triples (.jsonl file or folder; "
        "default: the current version's, if it had any)",
    )
    p.add_argument(
        "--extra-data",
        type=Path,
        nargs="+",
        default=None,
        metavar="PATH",
        help="also train on these as extra text (an older snapshot's tree, update triples), "
        "less either held-out split (polingo train --extra-data); default: the current "
        "version's, if it had any",
    )
    p.add_argument(
        "--terms",
        type=Path,
        default=None,
        metavar="PATH",
        help="more terms beside the glossary, in the prompts (polingo train --terms); "
        "default: the current version's, if it had any",
    )
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-pairs", type=int, default=None)
    options.add_reload_options(p, env)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from training.retrain import run as retrain

    if not args.service_url:
        return retrain(args)
    key = options.reload_key(args)
    return retrain(args, on_promoted=lambda: options.notify_service(args.service_url, key))
