"""`polingo eval`: translate the held-out split and score it; or a review log's figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.options import adapter_default, registry_default
from core.defaults import ENGINES
from core.prompt import MARKUP_RETRIES
from core.settings import Environment


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    ev = sub.add_parser("eval", help="translate the held-out split and score it")
    ev.add_argument(
        "--adapter", default=adapter_default(env), help="NAME[@VERSION] (default: current)"
    )
    ev.add_argument("--data", type=Path, help=".po tree whose held-out split is scored")
    ev.add_argument(
        "--review-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="report how often translators kept the drafts unchanged (kept_share) from "
        "polingo review's log; without --data, only that",
    )
    ev.add_argument("--registry", type=Path, default=registry_default(env))
    ev.add_argument("--limit", type=int, default=None, help="score only the first N held-out pairs")
    ev.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="the service's engine that translates (POLINGO_ENGINE, default vllm)",
    )
    ev.add_argument(
        "--markup-retries",
        type=int,
        default=None,
        metavar="N",
        help="candidates sampled when a greedy translation loses markup; 0: greedy only "
        f"(POLINGO_MARKUP_RETRIES, default {MARKUP_RETRIES})",
    )
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.registry import Registry
    from training.evaluate import evaluate, review_metrics

    if args.data is None and args.review_log is None:
        print("error: polingo eval needs --data, --review-log or both", file=sys.stderr)
        return 2
    if args.review_log is not None:
        for key, value in review_metrics(args.review_log).items():
            print(f"{key:18} {value:10.4g}")
    if args.data is None:
        return 0
    ev = evaluate(
        Registry(args.registry),
        args.adapter,
        args.data,
        limit=args.limit,
        engine=args.engine,
        markup_retries=args.markup_retries,
    )
    for key, value in ev.metrics.items():
        baseline = ev.baseline.get(key)
        print(
            f"{key:18} {value:10.4g}"
            + (f"   copy-source {baseline:10.4g}" if baseline is not None else "")
        )
    return 0
