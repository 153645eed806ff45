"""`polingo data stats DIR`: pairs, duplicates, split and problems of a .po tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.settings import Environment


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    data = sub.add_parser("data", help="inspect training data").add_subparsers(
        dest="action", required=True
    )
    stats = data.add_parser("stats", help="pairs, duplicates, split and problems of a .po tree")
    stats.add_argument("dir", type=Path, help="a .po file or a folder of them")
    stats.add_argument("--strict", action="store_true", help="fail on the first unreadable catalog")
    stats.add_argument("--heldout-percent", type=float, default=3.0)
    stats.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from training.data import load_corpus, stats_lines

    corpus = load_corpus(args.dir, strict=args.strict)
    print("\n".join(stats_lines(corpus, args.heldout_percent)))
    return 1 if corpus.problems else 0
