"""Retraining: new docs -> new adapter version -> evaluation gate -> promote (the
`polingo retrain` command, whose options cli/retrain.py defines).

Policy, stated once:
- Nothing happens with fewer than ``--min-changes`` new or changed pairs.
- The new version starts from the current adapter's weights (``--from current``,
  the default: cheaper than from scratch) and trains on ALL pairs of the new docs,
  old ones included, so it does not forget them. ``--from base`` retrains from the
  base model with the same settings (use it when the prompt contract or base changes).
- Both versions are scored on the same held-out split of the new docs (the split is
  a hash of the msgid, so no held-out msgid ever trained); the candidate is promoted
  unless its chrF is worse than the current one's by more than ``--margin`` points.
- An interrupted retrain leaves CURRENT untouched (a version folder appears whole or
  not at all); a rerun resumes from the run's last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from core.fsutil import atomic_write
from core.registry import DATA_INDEX, Registry
from training.config import TrainConfig
from training.data import Corpus, add_pairs, data_index, diff_index, load_corpus


def run(args: argparse.Namespace, on_promoted: Callable[[], int] | None = None) -> int:
    """Retrain ``args.adapter`` on ``args.docs`` (the options of `polingo retrain`,
    cli/retrain.py); 0 done or nothing to do, 3 the candidate failed the gate, else
    what ``on_promoted`` (telling a running service) returns after a promotion."""
    from training.train import train

    registry = Registry(args.registry)
    name, current = registry.resolve(args.adapter)
    ref = f"{name}@{current}"
    corpus = load_docs(args.docs, args.review_log)
    changes = data_changes(registry, ref, corpus)
    moved = changes["new_pairs"] + changes["changed_pairs"]
    print(
        f"{ref}: {changes['new_pairs']} new, {changes['changed_pairs']} changed, "
        f"{changes['removed_pairs']} removed pairs in {args.docs}"
    )
    if moved < args.min_changes:
        print(
            f"nothing to do: {moved} new or changed pairs, "
            f"fewer than --min-changes {args.min_changes}"
        )
        return 0
    config = candidate_config(registry, ref, args)
    print(
        f"training a new version from "
        f"{'the current adapter' if args.start == 'current' else 'the base model'} "
        f"on all {len(corpus.pairs)} pairs"
    )
    result = train(config, corpus)
    candidate = f"{name}@{result.version}"
    manifest = registry.manifest(candidate)
    for key, value in changes.items():
        setattr(manifest.data, key, value)
    registry.update_manifest(candidate, manifest)
    if not gate(registry, candidate, ref, corpus, config.heldout_percent, args):
        return 3
    registry.promote(candidate, reason=f"retrain: passed the gate against {ref}")
    print(f"promoted {candidate}")
    return on_promoted() if on_promoted else 0


def load_docs(docs: Path, review_log: Path | None = None) -> Corpus:
    """The pairs of ``docs``, plus those of a review log (``--review-log``)."""
    corpus = load_corpus(docs)
    if review_log is not None:
        from review import log

        added = add_pairs(corpus, log.training_pairs(log.read(review_log)))
        print(f"{review_log}: {added} pairs the catalogs do not have")
    return corpus


def data_changes(registry: Registry, ref: str, corpus: Corpus) -> dict[str, int]:
    """New, changed and removed pairs of ``corpus`` against the data ``ref`` trained on."""
    index_path = registry.path(ref) / DATA_INDEX
    old_index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    return diff_index(old_index, data_index(corpus.pairs))


def candidate_config(registry: Registry, ref: str, args: argparse.Namespace) -> TrainConfig:
    """The current version's training settings, continued from its weights (``--from
    current``) or from the base model, with the options given on the command line."""
    parent = registry.manifest(ref)
    explicit = {"data", "registry", "adapter", "base_model", "contract", "init_adapter"}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in parent.training.items() if k in fields and k not in explicit}
    overrides = {
        k: getattr(args, k)
        for k in ("epochs", "learning_rate", "max_steps", "max_pairs", "updates")
        if getattr(args, k, None) is not None
    }
    return TrainConfig(
        **{**settings, **overrides},  # type: ignore[arg-type]
        data=args.docs,
        registry=args.registry,
        adapter=parent.name,
        base_model=parent.base_model,
        contract=args.contract or parent.contract,
        parent=ref,
        init_adapter=registry.path(ref) if args.start == "current" else None,
        resume=True,
        command="polingo " + shlex.join(sys.argv[1:]),
    )


def gate(
    registry: Registry,
    candidate: str,
    ref: str,
    corpus: Corpus,
    heldout_percent: float,
    args: argparse.Namespace,
) -> bool:
    """Score both versions on one held-out subset, through the service's translator;
    True when the candidate is not worse than ``ref`` by more than ``--margin`` chrF."""
    from training.evaluate import evaluate_versions, heldout_subset, record_evaluation

    _, heldout = corpus.split(heldout_percent)
    pairs = heldout_subset(heldout, args.eval_limit)
    new, old = evaluate_versions(registry, [candidate, ref], pairs, engine=args.engine)
    record_evaluation(registry, new, pairs, args.eval_limit)
    delta = new.metrics["chrf"] - old.metrics["chrf"]
    print(
        f"chrF {candidate} {new.metrics['chrf']:.2f} vs {ref} "
        f"{old.metrics['chrf']:.2f} ({delta:+.2f})"
    )
    passed = delta >= -args.margin
    decision = {
        "candidate": {"ref": candidate, "metrics": new.metrics},
        "reference": {"ref": ref, "metrics": old.metrics},
        "pairs": len(pairs),
        "margin": args.margin,
        "promoted": passed,
    }
    report = registry.path(candidate) / "report"
    report.mkdir(exist_ok=True)  # the decision beside the candidate's own figures
    atomic_write(report / "gate.json", json.dumps(decision, indent=1).encode())
    if not passed:
        print(
            f"not promoted: {candidate} is worse by more than --margin {args.margin}; "
            f"{ref} stays current"
        )
        return False
    return True
