"""`polingo eval`: translate the held-out split and score it; an update set of two
catalog trees (--updates OLD NEW); or a review log's figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.options import adapter_default, add_settings_options, registry_default
from core.settings import DECODING_FIELDS, Environment, Settings


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    ev = sub.add_parser("eval", help="translate the held-out split and score it")
    ev.add_argument(
        "--adapter",
        nargs="+",
        default=adapter_default(env),  # one name; several given are a list
        metavar="NAME[@VERSION]",
        help="the version to score (default: the current one); several of one base model "
        "are scored in one engine run on the splits of the first (--data)",
    )
    ev.add_argument("--data", type=Path, help=".po tree whose held-out splits are scored")
    ev.add_argument(
        "--split",
        choices=["both", "pair", "document"],
        default="both",
        help="the pair split (msgids of partly translated pages), the document split (whole "
        "catalogs no version trained on) or both (default)",
    )
    ev.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="print the scores only; by default they go into each version's manifest and report/",
    )
    ev.add_argument(
        "--review-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="report how often translators kept the drafts unchanged (kept_share) from "
        "polingo review's log; without --data, only that",
    )
    ev.add_argument("--registry", type=Path, default=registry_default(env))
    ev.add_argument(
        "--limit", type=int, default=None, help="score N pairs of each split (the same N each time)"
    )
    # the service's decoding settings, for this run only
    add_settings_options(ev, Settings, only=DECODING_FIELDS)
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
    from training.evaluate import SPLITS, evaluate_many, review_metrics

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
    results = evaluate_many(
        Registry(args.registry),
        refs(args.adapter),
        args.data,
        limit=args.limit,
        record=args.record,
        splits=SPLITS if args.split == "both" else (args.split,),
        overrides={f: getattr(args, f) for f in DECODING_FIELDS},
    )
    print_evaluations(results)
    return 0


def refs(adapter: str | list[str]) -> list[str]:
    """--adapter's versions: the default (one name) or those given."""
    return [adapter] if isinstance(adapter, str) else adapter


def print_evaluations(results: list[dict[str, Any]]) -> None:
    """One table a split, labelled, a column a version, then copy-the-source."""
    for split in results[0]:
        rows = [r[split] for r in results]
        first = rows[0]
        print(f"{first.label} ({len(first.outcomes)} pairs)")
        print(f"{'':26}" + "".join(f"{r.ref:>16}" for r in rows) + f"{'copy-source':>14}")
        for key, value in first.metrics.items():
            cells = "".join(f"{r.metrics.get(key, float('nan')):16.4g}" for r in rows[1:])
            baseline = first.baseline.get(key)
            tail = f"{baseline:14.4g}" if baseline is not None else ""
            print(f"  {key:24}{value:16.4g}{cells}{tail}")
        print()


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
        ref=refs(args.adapter)[0],
        overrides={f: getattr(args, f) for f in DECODING_FIELDS},
    )
    print(f"{'':22}" + "".join(f"{mode:>16}" for mode in results))
    for key in next(iter(results.values())):
        print(f"{key:22}" + "".join(f"{r[key]:16.4g}" for r in results.values()))
    return 0
