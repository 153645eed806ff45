"""Retraining: new docs -> new adapter version -> evaluation gate -> promote (the
`polingo retrain` command, whose options cli/retrain.py defines).

Policy, stated once:
- Nothing happens with fewer than ``--min-changes`` new or changed pairs.
- The new version starts from the current adapter's weights (``--from current``,
  the default: cheaper than from scratch) and trains on ALL pairs of the new docs,
  old ones included, so it does not forget them. ``--from base`` retrains from the
  base model with the same settings (use it when the prompt contract or base changes).
- Both versions are scored on the same two held-out splits of the new docs
  (training/data.py: whole catalogs chosen by a hash of their path, and msgids chosen
  by a hash of the msgid, so no held-out text ever trained). The gate decides on the
  document split, pages no version saw: the candidate is refused when its chrF there is
  worse than the current one's by more than ``--margin`` points, and when it is on the
  pair split either. A tree with no document split (a few catalogs), or a version whose
  weights trained on the split's catalogs (one from before the split existed), is decided
  on the pair split alone, and says so. Both splits' figures go to the candidate's
  report/gate.json.
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
from typing import Any

from core.fsutil import atomic_write
from core.registry import DATA_INDEX, Registry
from core.settings import DECODING_FIELDS
from core.terms import TERMS
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
    if not gate(registry, candidate, ref, corpus, config, args):
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
        for k in (
            "epochs", "learning_rate", "max_steps", "max_pairs", "updates", "extra_data", "terms"
        )
        if getattr(args, k, None) is not None
    }  # fmt: skip
    settings = inherited_paths(settings, overrides, ref, registry.path(ref) / TERMS)
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


def inherited_paths(
    settings: dict[str, Any], overrides: dict[str, Any], ref: str, own_terms: Path
) -> dict[str, Any]:
    """``settings`` (``ref``'s recorded training settings) with the data paths the
    command line does not override checked: they belong to the machine that trained it.
    Missing extra text is left out, with a note; missing update triples stop the
    retrain, since without them the new version would lose the update mode: the message
    says which option to give. A missing terms file gives way to ``own_terms``, ``ref``'s
    terms.jsonl (the glossary's and those, as ``ref`` was trained with them), with a note."""
    from training.config import ConfigError

    terms = settings.get("terms")
    if "terms" not in overrides and terms and not Path(terms).is_file():
        print(
            f"note: {ref}'s terms file {terms} is not here: training with {ref}'s own "
            f"terms ({own_terms})",
            file=sys.stderr,
        )
        settings = {**settings, "terms": own_terms}

    updates = settings.get("updates")
    if "updates" not in overrides and updates and not Path(updates).exists():
        raise ConfigError(
            "updates",
            f"{ref} trained the update mode on {updates}, which is not here: give the update "
            "triples with --updates PATH (polingo data updates OLD_TREE NEW_TREE mines them)",
        )
    if "extra_data" not in overrides and settings.get("extra_data"):
        missing = [p for p in settings["extra_data"] if not Path(p).exists()]
        if missing:
            print(
                f"note: {ref}'s extra training text {', '.join(missing)} is not here: "
                "training without it (--extra-data PATH... gives other text)",
                file=sys.stderr,
            )
            kept = [p for p in settings["extra_data"] if p not in missing]
            return {**settings, "extra_data": kept}
    return settings


def gate(
    registry: Registry,
    candidate: str,
    ref: str,
    corpus: Corpus,
    config: TrainConfig,
    args: argparse.Namespace,
) -> bool:
    """Score both versions on the same held-out subsets of both splits, through the
    service's translator; True when the candidate loses no more than ``--margin`` chrF
    on either (the module docstring). The decision goes to report/gate.json."""
    from training.evaluate import (
        DOCUMENT,
        LABELS,
        PAIR,
        evaluate_splits,
        heldout_sets,
        mark_trained_on,
        record_evaluations,
        warn_trained_on,
    )

    held = heldout_sets(
        corpus, config.heldout_percent, config.document_percent, limit=args.eval_limit
    )
    for version in (candidate, ref):
        warn_trained_on(registry, version, held.document_files)
    overrides = {f: getattr(args, f, None) for f in DECODING_FIELDS}  # None: the service's
    new, old = evaluate_splits(registry, [candidate, ref], held.sets, overrides)
    for version, result in ((candidate, new), (ref, old)):
        mark_trained_on(registry, version, result, held.document_files)
    record_evaluations(registry, new, args.eval_limit)
    verdicts = decide(new, old, args.margin)
    for label, v in verdicts.items():
        print(
            f"{label}: chrF {candidate} {v['candidate_chrf']:.2f} vs {ref} "
            f"{v['reference_chrf']:.2f} ({v['delta']:+.2f})"
            + ("" if v["binding"] else f" (not compared: {v['why']})")
        )
    document = verdicts.get(LABELS[DOCUMENT])
    decided_on = LABELS[DOCUMENT] if document and document["binding"] else LABELS[PAIR]
    if DOCUMENT not in new:
        print(f"no document split in {args.docs}: the gate decides on the pair split alone")
    elif decided_on == LABELS[PAIR]:
        print("the gate decides on the pair split alone")
    refused = refused_on(verdicts)
    decision = {
        "candidate": _side(candidate, new),
        "reference": _side(ref, old),
        "pairs": len(held.sets[PAIR]),
        "document_pairs": len(held.sets[DOCUMENT]),
        "document_files": held.document_files,
        "margin": args.margin,
        "metric": "chrf",
        "decided_on": decided_on,
        "splits": verdicts,
        "promoted": not refused,
    }
    report = registry.path(candidate) / "report"
    report.mkdir(exist_ok=True)  # the decision beside the candidate's own figures
    atomic_write(report / "gate.json", json.dumps(decision, indent=1).encode())
    if refused:
        print(
            f"not promoted: {candidate} is worse on the {' and the '.join(refused)} by more "
            f"than --margin {args.margin}; {ref} stays current"
        )
        return False
    return True


def decide(new: dict[str, Any], old: dict[str, Any], margin: float) -> dict[str, dict[str, Any]]:
    """For each split both versions were scored on (training.evaluate.Evaluation by
    split), labelled: pairs, both chrF, the delta, and whether the candidate passed
    (it lost no more than ``margin``), and whether that counts (``binding``): the
    document split does not when either version's weights trained on its catalogs
    (a version from before the split: its figures there are not those of unseen pages,
    ``why`` says so), and the pair split then decides alone."""
    from training.evaluate import DOCUMENT, LABELS

    verdicts = {}
    for split, result in new.items():
        delta = round(result.metrics["chrf"] - old[split].metrics["chrf"], 2)
        verdict: dict[str, Any] = {
            "pairs": int(result.metrics["pairs"]),
            "candidate_chrf": result.metrics["chrf"],
            "reference_chrf": old[split].metrics["chrf"],
            "delta": delta,
            "passed": delta >= -margin,
            "binding": True,
        }
        if split == DOCUMENT:
            trained = {
                side: int(scores.metrics.get("catalogs_trained_on", 0))
                for side, scores in (("candidate", result), ("reference", old[split]))
            }
            if any(trained.values()):
                catalogs = int(old[split].metrics.get("catalogs", 0))
                verdict["binding"] = False
                verdict["why"] = ", ".join(
                    f"the {side} trained on {n} of its {catalogs} catalogs"
                    for side, n in trained.items()
                    if n
                )
        verdicts[LABELS[split]] = verdict
    return verdicts


def refused_on(verdicts: dict[str, dict[str, Any]]) -> list[str]:
    """The splits of decide()'s verdicts that refuse the candidate: those that count and
    that it failed (none: it is promoted)."""
    return [label for label, v in verdicts.items() if v["binding"] and not v["passed"]]


def _side(ref: str, result: dict[str, Any]) -> dict[str, Any]:
    """One version's figures in gate.json: ``metrics`` (pair split), ``document_metrics``."""
    side: dict[str, Any] = {"ref": ref}
    if "pair" in result:
        side["metrics"] = result["pair"].metrics
    if "document" in result:
        side["document_metrics"] = result["document"].metrics
    return side
