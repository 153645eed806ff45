"""Evaluation on the stable held-out split: chrF, BLEU (zh tokenizer), the share of
reST markup items kept, beside the copy-the-source baseline and the human
references' own markup score."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import sacrebleu

from service.contract import MARKUP_RETRIES
from service.markup import kept_count
from service.registry import Registry
from training.data import Pair, load_corpus
from training.generate import Item, translate_offline


@dataclass
class Evaluation:
    ref: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    examples: list[dict[str, str]]


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
    engine: str = "vllm",
    markup_retries: int = MARKUP_RETRIES,
    record: bool = True,
    pairs: list[Pair] | None = None,
) -> Evaluation:
    """Score ``ref`` on the held-out split of ``data`` (or on ``pairs``, when the caller
    has already read and split the corpus)."""
    from service.base_models import resolve_base_model

    name, version = registry.resolve(ref)
    manifest = registry.manifest(f"{name}@{version}")
    percent = float(manifest.training.get("heldout_percent", 3.0))  # type: ignore[arg-type]
    if pairs is None:
        pairs = heldout_pairs(data, percent, limit)
    if not pairs:
        raise SystemExit(f"error: no held-out pairs under {data}")
    print(f"eval: {name}@{version} on {len(pairs)} held-out pairs ({engine})", file=sys.stderr)
    translations = translate_offline(
        resolve_base_model(manifest.base_model),
        registry.path(f"{name}@{version}"),
        manifest.contract,
        [Item(p.msgid, p.msgctxt) for p in pairs],
        engine=engine,
        markup_retries=markup_retries,
    )
    outputs = translations.texts
    sources = [p.msgid for p in pairs]
    refs = [p.msgstr for p in pairs]
    metrics = score(sources, refs, outputs)
    greedy = score(sources, refs, translations.greedy)  # what the markup retry started from
    metrics.update(
        chrf_greedy=greedy["chrf"],
        bleu_zh_greedy=greedy["bleu_zh"],
        markup_kept_greedy=greedy["markup_kept"],
        markup_retries=float(markup_retries),
        markup_retried=float(translations.retried),
        markup_repaired=float(translations.repaired),
    )
    baseline = score(sources, refs, sources)
    baseline["reference_markup_kept"] = score(sources, refs, refs)["markup_kept"]
    examples = [
        {"source": s, "reference": r, "output": o}
        for s, r, o in list(zip(sources, refs, outputs, strict=True))[:8]
    ]
    result = Evaluation(f"{name}@{version}", metrics, baseline, examples)
    if record:
        from training.report import write_report

        manifest.metrics = {**metrics, "eval_limit": float(limit or 0)}
        manifest.baseline_metrics = baseline
        registry.update_manifest(f"{name}@{version}", manifest)
        folder = registry.path(f"{name}@{version}")
        write_report(folder, manifest, losses=None, examples=examples)
        with open(folder / "report" / "predictions.jsonl", "w", encoding="utf-8") as out:
            for pair, output, first in zip(pairs, outputs, translations.greedy, strict=True):
                row = {"msgid": pair.msgid, "reference": pair.msgstr, "output": output}
                if first != output:
                    row["greedy"] = first
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return result
