"""Evaluation on the stable held-out split: chrF, BLEU (zh tokenizer), the share of
reST markup items kept, beside the copy-the-source baseline and the human
references' own markup score; and what a translator would have to fix
(training/quality.py: chrF on prose, link labels translated, simplified Chinese,
sphinx-lint findings of the drafts against the references'); whether the drafts'
confidence ranks them as their chrF does, and consensus against greedy decoding
(training/calibration.py).

The translations come from the service's own translator (service.translator), with
the service's settings and engine: a manifest's scores are those of the code that
serves the adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import sacrebleu

from core.markup import kept_count, update_problems
from core.registry import Registry
from core.settings import Settings
from service.schemas import TranslateItem
from service.translator import Outcome, open_translator, translate_all
from training.calibration import calibration, mbr_metrics
from training.data import Pair, load_corpus
from training.quality import quality
from training.updates import Update


@dataclass
class Evaluation:
    ref: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    examples: list[dict[str, str]]
    outcomes: list[Outcome]


def score(sources: list[str], references: list[str], outputs: list[str]) -> dict[str, float]:
    chrf = sacrebleu.corpus_chrf(outputs, [references]).score
    bleu = sacrebleu.corpus_bleu(outputs, [references], tokenize="zh").score
    kept = total = 0
    for source, output in zip(sources, outputs, strict=True):
        k, t = kept_count(source, output)
        kept, total = kept + k, total + t
    return {
        "chrf": round(chrf, 2),
        "bleu_zh": round(bleu, 2),
        "markup_kept": round(kept / total, 4) if total else 1.0,
        "markup_items": float(total),
        "pairs": float(len(sources)),
    }


def review_metrics(path: Path) -> dict[str, float]:
    """What translators did with the drafts on the review page (polingo review's log):
    decisions by kind and ``kept_share``, the share accepted unchanged."""
    from review import log

    return log.kept_share(log.read(path))


def heldout_pairs(data: Path, heldout_percent: float, limit: int | None) -> list[Pair]:
    _, heldout = load_corpus(data).split(heldout_percent)
    return heldout_subset(heldout, limit)


def heldout_subset(heldout: list[Pair], limit: int | None) -> list[Pair]:
    if limit:
        # a hash order, not the alphabetical one: a representative subset, the same every time
        heldout = sorted(heldout, key=lambda p: hashlib.sha256(p.key.encode()).hexdigest())[:limit]
    return heldout


def evaluate(
    registry: Registry,
    ref: str,
    data: Path,
    *,
    limit: int | None = None,
    engine: str | None = None,
    markup_retries: int | None = None,
    candidates: int | None = None,
    record: bool = True,
) -> Evaluation:
    """Score ``ref`` on the held-out split of ``data``; with ``record``, write the scores
    into its manifest and its report (predictions.jsonl)."""
    name, version = registry.resolve(ref)
    manifest = registry.manifest(f"{name}@{version}")
    percent = float(manifest.training.get("heldout_percent", 3.0))  # type: ignore[arg-type]
    pairs = heldout_pairs(data, percent, limit)
    if not pairs:
        raise ValueError(f"no held-out pairs under {data}")
    (result,) = evaluate_versions(
        registry,
        [f"{name}@{version}"],
        pairs,
        engine=engine,
        markup_retries=markup_retries,
        candidates=candidates,
    )
    if record:
        record_evaluation(registry, result, pairs, limit)
    return result


def evaluate_versions(
    registry: Registry,
    refs: list[str],
    pairs: list[Pair],
    *,
    engine: str | None = None,
    markup_retries: int | None = None,
    candidates: int | None = None,
) -> list[Evaluation]:
    """Score each adapter version ("NAME@VERSION", one base model) on ``pairs``, through
    one translator: the engine starts once for all of them."""
    settings = Settings.from_env(
        registry=registry.root,
        engine=engine,
        markup_retries=markup_retries,
        candidates=candidates,
    )
    items = [TranslateItem(p.msgid, p.msgctxt) for p in pairs]
    return asyncio.run(_evaluate(settings, refs, pairs, items))


async def _evaluate(
    settings: Settings, refs: list[str], pairs: list[Pair], items: list[TranslateItem]
) -> list[Evaluation]:
    results = []
    async with open_translator(settings, only=refs[0]) as translator:
        for ref in refs:
            done = 0

            def progress(n: int, ref: str = ref) -> None:
                nonlocal done
                done += n
                print(f"eval: {ref} {done}/{len(items)}", file=sys.stderr, flush=True)

            print(
                f"eval: {ref} on {len(items)} held-out pairs ({translator.engine.kind})",
                file=sys.stderr,
            )
            outcomes = await translate_all(translator, ref, items, on_batch=progress)
            results.append(_scores(ref, pairs, outcomes, settings))
            # each version's scores as soon as they are known: a run cut off later keeps them
            print(f"eval: {ref} {json.dumps(results[-1].metrics, sort_keys=True)}", file=sys.stderr)
    return results


def _scores(ref: str, pairs: list[Pair], outcomes: list[Outcome], settings: Settings) -> Evaluation:
    sources = [p.msgid for p in pairs]
    refs = [p.msgstr for p in pairs]
    outputs = [o.text for o in outcomes]
    metrics = score(sources, refs, outputs)
    greedy = score(sources, refs, [o.greedy for o in outcomes])  # before the markup retry
    retried = [o for o in outcomes if o.retried]
    metrics.update(
        chrf_greedy=greedy["chrf"],
        bleu_zh_greedy=greedy["bleu_zh"],
        markup_kept_greedy=greedy["markup_kept"],
        markup_retries=float(settings.markup_retries),
        markup_retried=float(len(retried)),
        markup_repaired=float(sum(not _markup_warnings(o) for o in retried)),
        from_memory=float(sum(o.from_memory for o in outcomes)),
        refused=float(sum(o.text == "" for o in outcomes)),
    )
    metrics.update(quality(sources, refs, outputs))  # what a translator would have to fix
    drafts = [None if o.from_memory else o.confidence for o in outcomes]
    metrics.update(calibration(refs, outputs, drafts))
    greedy_texts = [o.greedy for o in outcomes]
    metrics.update(mbr_metrics(sources, refs, outputs, greedy_texts, settings.candidates))
    baseline = score(sources, refs, sources)
    baseline["reference_markup_kept"] = score(sources, refs, refs)["markup_kept"]
    examples = [
        {"source": s, "reference": r, "output": o}
        for s, r, o in list(zip(sources, refs, outputs, strict=True))[:8]
    ]
    return Evaluation(ref, metrics, baseline, examples, outcomes)


def record_evaluation(
    registry: Registry, result: Evaluation, pairs: list[Pair], limit: int | None
) -> None:
    """Scores into the version's manifest; report and predictions.jsonl beside it."""
    from training.report import write_report

    manifest = registry.manifest(result.ref)
    manifest.metrics = {**result.metrics, "eval_limit": float(limit or 0)}
    manifest.baseline_metrics = result.baseline
    registry.update_manifest(result.ref, manifest)
    folder = registry.path(result.ref)
    write_report(folder, manifest, losses=None, examples=result.examples)
    with open(folder / "report" / "predictions.jsonl", "w", encoding="utf-8") as out:
        for pair, outcome in zip(pairs, result.outcomes, strict=True):
            row = {"msgid": pair.msgid, "reference": pair.msgstr, "output": outcome.text}
            if outcome.greedy != outcome.text:
                row["greedy"] = outcome.greedy
            if outcome.warnings:
                row["warnings"] = outcome.warnings
            if outcome.confidence is not None:
                row["confidence"] = outcome.confidence
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _markup_warnings(outcome: Outcome) -> list[str]:
    return [w for w in outcome.warnings if "markup" in w or "placeholder" in w]


# ---- update mode (issue 41) ----------------------------------------------------------

# update-checked: the update mode as translate-po writes it, the old translation kept
# where the edit fails the markup or sphinx-lint checks (core.markup.update_problems)
UPDATE_MODES = ("keep-old", "scratch", "update", "update-checked")


def update_scores(updates: list[Update], outputs: list[str]) -> dict[str, float]:
    """chrF, markup kept and the rest of ``score`` and ``quality`` against the humans'
    new translations, and ``unchanged_returned``: of the entries the humans left as they
    were, the share returned byte-identical."""
    sources = [u.msgid for u in updates]
    refs = [u.msgstr for u in updates]
    metrics = score(sources, refs, outputs)
    metrics.update(quality(sources, refs, outputs))
    kept = [(u, o) for u, o in zip(updates, outputs, strict=True) if u.unchanged]
    metrics["unchanged_entries"] = float(len(kept))
    returned = sum(o == u.old_msgstr for u, o in kept)
    metrics["unchanged_returned"] = round(returned / len(kept), 4) if kept else 1.0
    return metrics


def evaluate_updates(
    updates: list[Update],
    modes: list[str],
    *,
    registry: Registry | None = None,
    ref: str | None = None,
    engine: str | None = None,
    markup_retries: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score each mode on an update set (training.updates.mine_updates): keep-old (the
    translation msgmerge left), scratch (the adapter translates the new source), update
    (the adapter edits the old translation; an adapter without update mode answers the
    old one). The model's modes go through the service's translator, as it answers."""
    results: dict[str, dict[str, float]] = {}
    if "keep-old" in modes:
        results["keep-old"] = update_scores(updates, [u.old_msgstr for u in updates])
        results["keep-old"]["from_memory"] = 0.0
    wanted = [m for m in modes if m in ("scratch", "update", "update-checked")]
    if wanted:
        if registry is None or ref is None:
            raise ValueError(f"modes {', '.join(wanted)} need an adapter")
        settings = Settings.from_env(
            registry=registry.root, engine=engine, markup_retries=markup_retries
        )
        name, version = registry.resolve(ref)
        asked = list(dict.fromkeys("update" if m == "update-checked" else m for m in wanted))
        key = f"{name}@{version}"
        outcomes = asyncio.run(_translate_updates(settings, key, updates, asked))
        if "update-checked" in wanted:
            pairs = zip(updates, outcomes["update"], strict=True)
            outcomes["update-checked"] = [_checked_update(u, o) for u, o in pairs]
        for mode in wanted:
            results[mode] = update_scores(updates, [o.text for o in outcomes[mode]])
            # answered by the adapter's memory (a reference it was trained on, if any)
            results[mode]["from_memory"] = float(sum(o.from_memory for o in outcomes[mode]))
    return results


def _checked_update(update: Update, outcome: Outcome) -> Outcome:
    """What translate-po writes for an update: the edit, or the old translation where the
    edit fails the checks the old one passed."""
    warnings = [w for w in outcome.warnings if "no update mode" not in w]
    if update_problems(update.msgid, update.old_msgstr, outcome.text, warnings):
        return outcome._replace(text=update.old_msgstr)
    return outcome


async def _translate_updates(
    settings: Settings, ref: str, updates: list[Update], modes: list[str]
) -> dict[str, list[Outcome]]:
    out = {}
    async with open_translator(settings, only=ref) as translator:
        for mode in modes:
            items = [
                TranslateItem(u.msgid, u.msgctxt)
                if mode == "scratch"
                else TranslateItem(u.msgid, u.msgctxt, u.previous_msgid, u.old_msgstr)
                for u in updates
            ]
            print(f"eval: {ref} {mode} on {len(items)} updates", file=sys.stderr, flush=True)
            outcomes = await translate_all(translator, ref, items)
            out[mode] = outcomes
    return out
