"""`polingo eval`: translate the held-out split and score it; an update set of two
catalog trees (--updates OLD NEW); or a review log's figures."""

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
    ev.add_argument(
        "--candidates",
        type=int,
        default=None,
        metavar="N",
        help="candidates per text, greedy plus N-1 samples, the consensus answered; "
        "reports MBR against greedy when N > 1 (POLINGO_CANDIDATES, default 1)",
    )
    ev.add_argument(
        "--updates",
        nargs=2,
        type=Path,
        metavar=("OLD_TREE", "NEW_TREE"),
        help="score the update set of two states of a .po tree (msgmerge --previous OLD onto "
        "NEW, entries a human then translated) for each of --modes",
    )
    ev.add_argument(
        "--modes",
        default="keep-old,scratch,update,update-checked",
        help="with --updates: keep-old (the old translation as msgmerge left it), scratch "
        "(the adapter translates the new source), update (the adapter edits the old "
        "translation), update-checked (update as translate-po writes it: the old "
        "translation where the edit fails the markup or sphinx-lint checks); "
        "comma-separated (default: all four)",
    )
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.registry import Registry
    from training.evaluate import evaluate, review_metrics

    if args.updates is not None:
        return run_updates(args)
    if args.data is None and args.review_log is None:
        print("error: polingo eval needs --data, --updates, --review-log or both", file=sys.stderr)
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
        candidates=args.candidates,
    )
    for key, value in ev.metrics.items():
        baseline = ev.baseline.get(key)
        print(
            f"{key:18} {value:10.4g}"
            + (f"   copy-source {baseline:10.4g}" if baseline is not None else "")
        )
    return 0


def run_updates(args: argparse.Namespace) -> int:
    """`polingo eval --updates OLD NEW`: one column per mode."""
    from core.registry import Registry
    from training.evaluate import UPDATE_MODES, evaluate_updates
    from training.updates import mine_updates

    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in UPDATE_MODES]
    if unknown or not modes:
        print(f"error: --modes: use {', '.join(UPDATE_MODES)}", file=sys.stderr)
        return 2
    updates = mine_updates(*args.updates)
    if args.limit:
        updates = updates[: args.limit]
    if not updates:
        print(f"error: no update entries between {args.updates[0]} and {args.updates[1]}")
        return 2
    kept = sum(u.unchanged for u in updates)
    print(f"{len(updates)} update entries ({kept} kept unchanged by the humans)")
    results = evaluate_updates(
        updates,
        modes,
        registry=Registry(args.registry),
        ref=args.adapter,
        engine=args.engine,
        markup_retries=args.markup_retries,
    )
    print(f"{'':22}" + "".join(f"{mode:>16}" for mode in results))
    for key in next(iter(results.values())):
        print(f"{key:22}" + "".join(f"{r[key]:16.4g}" for r in results.values()))
    return 0
