"""`polingo data stats DIR`: pairs, duplicates, split and problems of a .po tree;
`polingo data updates OLD NEW [-o FILE]`: update triples mined with msgmerge;
`polingo data terms TREE -o FILE`: terms mined from the training pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.settings import Environment
from training.term_mining import MAX_PAIRS, MIN_DICE, MIN_PAIRS


def add_parser(sub: argparse._SubParsersAction, env: Environment) -> None:
    data = sub.add_parser("data", help="inspect training data").add_subparsers(
        dest="action", required=True
    )
    stats = data.add_parser("stats", help="pairs, duplicates, split and problems of a .po tree")
    stats.add_argument("dir", type=Path, help="a .po file or a folder of them")
    stats.add_argument("--strict", action="store_true", help="fail on the first unreadable catalog")
    stats.add_argument("--heldout-percent", type=float, default=3.0, help="the pair split")
    stats.add_argument(
        "--document-percent",
        type=float,
        default=7.0,
        help="the document split: percent of the catalogs held out whole",
    )
    stats.set_defaults(run=run)
    updates = data.add_parser(
        "updates",
        help="mine update triples from two states of a .po tree (msgmerge --previous)",
    )
    updates.add_argument("old", type=Path, metavar="OLD_TREE", help="the older catalogs")
    updates.add_argument("new", type=Path, metavar="NEW_TREE", help="the newer catalogs")
    updates.add_argument(
        "-o", "--output", type=Path, default=None, help="JSON-lines file (default: stdout)"
    )
    updates.set_defaults(run=run_updates)
    terms = data.add_parser(
        "terms",
        help="mine the terms a .po tree's training pairs translate one way (for "
        "polingo train --terms)",
    )
    terms.add_argument("tree", type=Path, metavar="TREE", help="the translated catalogs")
    terms.add_argument("-o", "--output", type=Path, required=True, help="terms.jsonl to write")
    terms.add_argument(
        "--min-pairs",
        type=int,
        default=MIN_PAIRS,
        help=f"fewest pairs an English term is in ({MIN_PAIRS})",
    )
    terms.add_argument(
        "--max-pairs",
        type=int,
        default=MAX_PAIRS,
        help=f"most pairs an English term is in ({MAX_PAIRS}): the common words need no hint",
    )
    terms.add_argument(
        "--min-dice",
        type=float,
        default=MIN_DICE,
        help=f"weakest association of a term and its Chinese (Dice, 0-1; {MIN_DICE})",
    )
    terms.set_defaults(run=run_terms)


def run(args: argparse.Namespace) -> int:
    from training.data import load_corpus, stats_lines

    corpus = load_corpus(args.dir, strict=args.strict)
    print("\n".join(stats_lines(corpus, args.heldout_percent, args.document_percent)))
    return 1 if corpus.problems else 0


def run_updates(args: argparse.Namespace) -> int:
    from training.updates import updates_command

    return updates_command(args.old, args.new, args.output)


def run_terms(args: argparse.Namespace) -> int:
    from training.term_mining import terms_command

    return terms_command(
        args.tree,
        args.output,
        min_pairs=args.min_pairs,
        max_pairs=args.max_pairs,
        min_dice=args.min_dice,
    )
