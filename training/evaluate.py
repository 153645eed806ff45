"""Evaluation on the two stable held-out splits (training/data.py), each always
labelled: the pair split (msgids of partly translated pages) and the document split
(whole catalogs no version trained on). For each: chrF, BLEU (zh tokenizer), the share
of reST markup items kept, beside the copy-the-source baseline and the human
references' own markup score; what a translator would have to fix
(training/quality.py: chrF on prose, link labels translated, simplified Chinese,
sphinx-lint findings of the drafts against the references'); whether the drafts'
confidence ranks them as their chrF does, and consensus against greedy decoding
(training/calibration.py); and the failure report (training/failures.py: dropped
markup, dropped or repeated clauses, English left, the examples' similarity).

The document split is a page nobody has translated yet: its pairs are hidden from the
memory the prompts draw on (exact answers and examples) for every version scored, and
a version trained before the split existed is flagged, since its weights saw them.

The translations come from the service's own translator (service.translator), with
the service's settings and engine: a manifest's scores are those of the code that
serves the adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sacrebleu

from core.markup import kept_count, update_problems
from core.registry import Registry
from core.settings import Settings
from service.adapters import LoadedAdapter
from service.schemas import TranslateItem
from service.translator import Outcome, Translator, open_translator, translate_all
from training.calibration import calibration, mbr_metrics
from training.data import DOCUMENT_PERCENT_DEFAULT, Corpus, Pair, load_corpus
from training.failures import failure_report, summary_metrics
from training.quality import quality
from training.updates import Update

PAIR, DOCUMENT = "pair", "document"
SPLITS = (PAIR, DOCUMENT)
LABELS = {PAIR: "pair split", DOCUMENT: "document split"}


@dataclass
class Evaluation:
    ref: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    examples: list[dict[str, str]]
    outcomes: list[Outcome]
    split: str = PAIR
    failures: dict[str, object] | None = None
    pairs: list[Pair] | None = None

    @property
    def label(self) -> str:
        return LABELS[self.split]


@dataclass
class HeldOut:
    """The pairs each split scores (a --limit subset), and the document split's catalogs."""

    sets: dict[str, list[Pair]]
    document_files: list[str]


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
    """The pair split of ``data`` (a --limit subset)."""
    return heldout_sets(load_corpus(data), heldout_percent, limit=limit).sets[PAIR]


def heldout_sets(
    corpus: Corpus,
    heldout_percent: float,
    document_percent: float = DOCUMENT_PERCENT_DEFAULT,
    *,
    limit: int | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> HeldOut:
    """Both splits of ``corpus``, each cut to ``limit`` pairs (the same subset every time)."""
    found = corpus.splits(heldout_percent, document_percent)
    every = {PAIR: found.pairs, DOCUMENT: found.documents}
    return HeldOut(
        {split: heldout_subset(every[split], limit) for split in splits}, found.document_files
    )


def split_percents(registry: Registry, ref: str) -> tuple[float, float]:
    """(pair split, document split) percents a version trained with; a version from
    before the document split gets today's default, so it is scored on the same one."""
    training = registry.manifest(ref).training
    return (
        float(training.get("heldout_percent", 3.0)),  # type: ignore[arg-type]
        float(training.get("document_percent", DOCUMENT_PERCENT_DEFAULT)),  # type: ignore[arg-type]
    )


def catalogs_trained_on(registry: Registry, ref: str, files: list[str]) -> list[str]:
    """Those of ``files`` (the document split's catalogs) that ``ref``'s weights trained
    on, its own training or that of a version it continued from: all of them for a
    version trained before the document split existed."""
    seen: set[str] = set()
    percent = split_percents(registry, ref)[1]
    while ref:
        manifest = registry.manifest(ref)
        held = manifest.data.document_files
        if held is None:
            return sorted(files)
        if split_percents(registry, ref)[1] != percent:
            seen |= set(files) - set(held)  # another split: what it held out is all we know
        init = manifest.training.get("init_adapter")
        ref = manifest.parent if init and manifest.parent else ""
    return sorted(seen)


def heldout_subset(heldout: list[Pair], limit: int | None) -> list[Pair]:
    if limit:
        # a hash order, not the alphabetical one: a representative subset, the same every time
        heldout = sorted(heldout, key=lambda p: hashlib.sha256(p.key.encode()).hexdigest())[:limit]
    return heldout


def evaluate(registry: Registry, ref: str, data: Path, **options: Any) -> dict[str, Evaluation]:
    """Score ``ref`` on the held-out splits of ``data``: evaluate_many() for one version
    (the same options); with ``record`` (default), its scores go into its manifest and
    its report (predictions.jsonl, failures.json)."""
    return evaluate_many(registry, [ref], data, **options)[0]


def evaluate_many(
    registry: Registry,
    refs: list[str],
    data: Path,
    *,
    limit: int | None = None,
    record: bool = True,
    splits: tuple[str, ...] = SPLITS,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Evaluation]]:
    """Score several versions of one base model in one engine run, on the splits of the
    first one's settings (the same pairs for all); each version's scores by split.
    ``overrides``: Settings fields for this run (engine, markup_retries, candidates,
    the penalties); the rest, and those given as None, as the service reads them."""
    keys = []
    for ref in refs:
        name, version = registry.resolve(ref)
        keys.append(f"{name}@{version}")
    heldout_percent, document_percent = split_percents(registry, keys[0])
    held = heldout_sets(
        load_corpus(data), heldout_percent, document_percent, limit=limit, splits=splits
    )
    if not any(held.sets.values()):
        raise ValueError(f"no held-out pairs under {data}")
    for key in keys:
        if DOCUMENT in held.sets:
            warn_trained_on(registry, key, held.document_files)
    results = evaluate_splits(registry, keys, held.sets, overrides)
    for key, result in zip(keys, results, strict=True):
        mark_trained_on(registry, key, result, held.document_files)
        if record:
            record_evaluations(registry, result, limit)
    return results


def mark_trained_on(
    registry: Registry, ref: str, result: dict[str, Evaluation], files: list[str]
) -> None:
    """The document split's catalogs, and how many of them ``ref`` trained on, into its
    document-split metrics."""
    if DOCUMENT in result:
        trained = catalogs_trained_on(registry, ref, files)
        result[DOCUMENT].metrics["catalogs"] = float(len(files))
        result[DOCUMENT].metrics["catalogs_trained_on"] = float(len(trained))


def warn_trained_on(registry: Registry, ref: str, files: list[str]) -> None:
    """A line on stderr when ``ref`` trained on some of the document split's catalogs."""
    trained = catalogs_trained_on(registry, ref, files)
    if trained:
        print(
            f"eval: note: {ref} trained on {len(trained)} of the document split's "
            f"{len(files)} catalogs (it predates the split, or continued from a version "
            "that does): its document-split figures are not those of unseen pages",
            file=sys.stderr,
        )


def evaluate_versions(
    registry: Registry,
    refs: list[str],
    pairs: list[Pair],
    **overrides: Any,
) -> list[Evaluation]:
    """Score each adapter version ("NAME@VERSION", one base model) on ``pairs`` (the
    pair split), through one translator: the engine starts once for all of them.
    ``overrides``: Settings fields, as evaluate_many's."""
    results = evaluate_splits(registry, refs, {PAIR: pairs}, overrides)
    return [r[PAIR] for r in results]


def evaluate_splits(
    registry: Registry,
    refs: list[str],
    sets: dict[str, list[Pair]],
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Evaluation]]:
    """Each version scored on each split (empty ones skipped), one engine for all;
    ``overrides``: Settings fields, as evaluate_many's. The engine returns logprobs
    whatever POLINGO_CONFIDENCE says: every evaluation reports the calibration."""
    settings = Settings.from_env(
        registry=registry.root, **{"confidence": True, **(overrides or {})}
    )
    sets = {split: pairs for split, pairs in sets.items() if pairs}
    return asyncio.run(_evaluate(settings, refs, sets))


async def _evaluate(
    settings: Settings, refs: list[str], sets: dict[str, list[Pair]]
) -> list[dict[str, Evaluation]]:
    results: list[dict[str, Evaluation]] = []
    hidden = {p.msgid for p in sets.get(DOCUMENT, [])}
    async with open_translator(settings, only=refs[0]) as translator:
        for ref in refs:
            results.append({})
            for split, pairs in sets.items():
                if split == DOCUMENT:
                    hide_from_memory(await translator.adapter(ref), hidden)
                result = await _evaluate_one(translator, ref, split, pairs, settings)
                results[-1][split] = result
                # each version's scores as soon as they are known: a run cut off keeps them
                print(
                    f"eval: {ref} {result.label} {json.dumps(result.metrics, sort_keys=True)}",
                    file=sys.stderr,
                )
    return results


async def _evaluate_one(
    translator: Translator, ref: str, split: str, pairs: list[Pair], settings: Settings
) -> Evaluation:
    items = [TranslateItem(p.msgid, p.msgctxt) for p in pairs]
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        print(f"eval: {ref} {LABELS[split]} {done}/{len(items)}", file=sys.stderr, flush=True)

    print(
        f"eval: {ref} on {len(items)} pairs of the {LABELS[split]} ({translator.engine.kind})",
        file=sys.stderr,
    )
    outcomes = await translate_all(translator, ref, items, on_batch=progress)
    result = _scores(ref, pairs, outcomes, settings)
    result.split, result.pairs = split, pairs
    result.metrics.update(  # decoding settings, as markup_retries: they change the scores
        repetition_penalty=settings.repetition_penalty,
        frequency_penalty=settings.frequency_penalty,
    )
    similarities = example_similarities(await translator.adapter(ref), pairs, outcomes)
    result.failures = failure_report(
        [p.msgid for p in pairs], [p.msgstr for p in pairs], [o.text for o in outcomes],
        similarities,
    )  # fmt: skip
    result.metrics.update(summary_metrics(result.failures))
    return result


def hide_from_memory(adapter: LoadedAdapter, msgids: set[str]) -> int:
    """Take ``msgids`` out of a loaded adapter's memory, exact answers and prompt examples
    alike (the document split: pages nobody translated). The number taken out."""
    kept = adapter.memory.without(msgids)
    taken = len(adapter.memory) - len(kept)
    if taken:
        adapter.memory = kept
        if adapter.prompts.index is not None:
            from core.retrieval import ExampleIndex  # bm25s: only contracts with examples

            adapter.prompts.index = ExampleIndex(kept.pairs())
    return taken


def example_similarities(
    adapter: LoadedAdapter, pairs: list[Pair], outcomes: list[Outcome]
) -> list[float | None]:
    """For each pair the model translated, the similarity to its source of the most
    similar memory example its prompt showed (the translator's own retrieval, rerun);
    None where the prompt showed none or the memory answered."""
    todo = [i for i, o in enumerate(outcomes) if not o.from_memory]
    out: list[float | None] = [None] * len(pairs)
    if adapter.prompts.index is None:
        return out
    from core.retrieval import similarity

    shown = adapter.prompts.examples_for([pairs[i].msgid for i in todo])
    for i, examples in zip(todo, shown, strict=True):
        if examples:
            out[i] = max(similarity(e.msgid, pairs[i].msgid) for e in examples)
    return out


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
    if settings.candidates > 1:
        metrics["mbr_temperature"] = settings.consensus_temperature
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
    """One split's scores into the version's manifest; report beside it."""
    result.pairs = pairs
    record_evaluations(registry, {result.split: result}, limit)


def record_evaluations(
    registry: Registry, results: dict[str, Evaluation], limit: int | None
) -> None:
    """Scores into the version's manifest (``metrics``: the pair split,
    ``document_metrics``: the document split); report, predictions.jsonl (each row
    labelled with its split) and failures.json beside it."""
    from core.fsutil import atomic_write
    from training.report import write_report

    ref = next(iter(results.values())).ref
    manifest = registry.manifest(ref)
    for split, result in results.items():
        # an undefined figure (NaN: a rank correlation of constant values) would be
        # written as null, and the manifest could not be read back: left out
        metrics = {k: v for k, v in result.metrics.items() if math.isfinite(v)}
        metrics["eval_limit"] = float(limit or 0)
        if split == PAIR:
            manifest.metrics, manifest.baseline_metrics = metrics, result.baseline
        else:
            manifest.document_metrics = metrics
            manifest.document_baseline_metrics = result.baseline
    registry.update_manifest(ref, manifest)
    folder = registry.path(ref)
    examples = results[PAIR].examples if PAIR in results else []
    failures = {r.label: r.failures for r in results.values() if r.failures is not None}
    report = write_report(folder, manifest, losses=None, examples=examples, failures=failures)
    rows = _other_splits_rows(report / "predictions.jsonl", set(results))
    for split, result in results.items():
        for pair, outcome in zip(result.pairs or [], result.outcomes, strict=True):
            row = {"split": split, "msgid": pair.msgid, "reference": pair.msgstr}
            row["output"] = outcome.text
            if outcome.greedy != outcome.text:
                row["greedy"] = outcome.greedy
            if outcome.warnings:
                row["warnings"] = outcome.warnings
            if outcome.confidence is not None:
                row["confidence"] = outcome.confidence
            rows.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write(report / "predictions.jsonl", "".join(rows).encode())


def predictions_by_split(path: Path) -> dict[str, list[dict]]:
    """A report's predictions.jsonl, its rows by split (rows from before the document
    split are the pair split's), for the benchmark scripts that read it back."""
    by_split: dict[str, list[dict]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_split.setdefault(_row_split(row), []).append(row)
    return by_split


def _row_split(row: dict) -> str:
    """The split of a predictions.jsonl row: rows from before the document split have no
    "split" and are the pair split's."""
    return row.get("split", PAIR)


def _other_splits_rows(path: Path, splits: set[str]) -> list[str]:
    """The rows of an earlier predictions.jsonl whose split was not scored again."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return [x for x in lines if x.strip() and _row_split(json.loads(x)) not in splits]


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
    overrides: dict[str, Any] | None = None,
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
        settings = Settings.from_env(registry=registry.root, **(overrides or {}))
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
