"""Consensus (issue 39): where its gain comes from. Records every candidate of a
`polingo eval --candidates N` run, then scores selection rules on them offline.

    python bench/mbr_candidates.py record OUT.jsonl [--source samples|variants] -- EVAL_ARGS
    python bench/mbr_candidates.py score OUT.jsonl PREDICTIONS.jsonl [--mix SAMPLES.jsonl]

``record`` runs `polingo eval EVAL_ARGS` (give --candidates 8 --markup-retries 0) with the
translator's candidate step replaced by a recording one (a bench harness, not the
service's code): ``samples`` draws the N-1 samples the service draws; ``variants`` asks
for the greedy translations of the same source under other subsets of its memory examples
(each example left out in turn, the first two, the first, none), then fills up with
samples; ``--min-p P`` samples with vLLM's min_p (with --consensus-temperature 1: close to
epsilon sampling). Each row: the source, and every candidate raw and as answered (markup restored,
code kept), with its token confidence. ``score`` reads the eval's predictions.jsonl for the
references and prints chrF on prose (the eval's ``chrf_prose``) for: the greedy candidate,
consensus with several utilities on the raw or the answered texts, the highest token
confidence, and the oracle (the candidate closest to the reference). ``--mix``: a
``samples`` recording of the same split, to mix variants and samples into one set of N.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def example_variants(examples: list) -> list[list]:
    """Example lists other than the full one, each once: one left out in turn, the
    first two, the first, none."""
    seen, out = {tuple(examples)}, []
    for v in [examples[:i] + examples[i + 1 :] for i in range(len(examples))] + [
        examples[:2], examples[:1], []
    ]:  # fmt: skip
        if tuple(v) not in seen:
            seen.add(tuple(v))
            out.append(v)
    return out


def record(out_path: Path, source: str, eval_args: list[str], min_p: float = 0.0) -> int:
    import functools

    from cli.main import main
    from core.confidence import consensus
    from service import translator as t

    rows: list[dict] = []

    async def recording(self, adapter, jobs, greedy):  # Translator._consensus's signature
        n, builder = self.settings.candidates, adapter.prompts
        if min_p and not isinstance(self.engine._sampling_params, functools.partial):
            self.engine._sampling_params = functools.partial(  # the vLLM engine's
                self.engine._sampling_params, min_p=min_p
            )
        per = [[] for _ in jobs]
        if source == "variants":
            per = [example_variants(list(j.prepared.examples))[: n - 1] for j in jobs]
        variant_jobs, owners = [], []
        for k, (job, lists) in enumerate(zip(jobs, per, strict=True)):
            p = job.prepared
            for q in builder.prompts([p.text] * len(lists), [p.msgctxt] * len(lists), lists):
                variant_jobs.append(self._encode(q, "variant"))
                owners.append(k)
        variant_out = await self._generate(adapter, variant_jobs) if variant_jobs else []
        need = [n - 1 - len(lists) for lists in per]
        sample_jobs = [job for job, m in zip(jobs, need, strict=True) for _ in range(m)]
        seeds = [s + 1 for m in need for s in range(m)]
        temperature = self.settings.consensus_temperature
        sample_out = await self._generate(
            adapter, sample_jobs, temperature=temperature, seeds=seeds
        ) if sample_jobs else []  # fmt: skip
        out, v, s = [], 0, 0
        for k, first in enumerate(greedy):
            cands, preps = [first], [jobs[k].prepared]
            while v < len(owners) and owners[v] == k:
                cands.append(variant_out[v])
                preps.append(variant_jobs[v].prepared)
                v += 1
            cands += sample_out[s : s + need[k]]
            preps += [jobs[k].prepared] * need[k]
            s += need[k]
            answers = [t._answer(builder, p, c.text)[0] for c, p in zip(cands, preps, strict=True)]
            rows.append({
                "msgid": jobs[k].prepared.text,
                "variants": len(cands) - 1 - need[k],
                "raw": [c.text for c in cands],
                "answered": answers,
                "token_confidence": [c.token_confidence for c in cands],
            })  # fmt: skip
            best, agreement = consensus(answers)
            out.append(cands[best]._replace(agreement=agreement))
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        out_path.write_text(text)  # whole each time: the eval calls this once per batch
        return out

    t.Translator._consensus = recording
    return main(["eval", *eval_args])


def _chrf(**kw) -> Callable[[str, str], float]:
    from sacrebleu.metrics import CHRF

    metric = CHRF(**kw)
    return lambda hyp, ref: metric.sentence_score(hyp, [ref]).score


def _bleu_zh() -> Callable[[str, str], float]:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="zh", effective_order=True)
    return lambda hyp, ref: metric.sentence_score(hyp, [ref]).score


def consensus_pick(
    texts: list[str], utility: Callable[[str, str], float], confidence=None, weight=0.0
) -> int:
    """The candidate with the highest mean utility against the others (+ weight x 100 x
    its log token confidence), the first on ties."""
    n = len(texts)
    scores = []
    for i in range(n):
        mean = sum(100.0 if texts[i] == texts[j] else utility(texts[i], texts[j])
                   for j in range(n) if j != i) / (n - 1)  # fmt: skip
        if weight and confidence and confidence[i]:
            mean += weight * 100 * math.log(max(confidence[i], 1e-6))
        scores.append(mean)
    return max(range(n), key=lambda i: (scores[i], -i))


def score(path: Path, predictions: Path, mix: Path | None) -> None:
    from sacrebleu.metrics import CHRF

    from training.evaluate import predictions_by_split

    refs = {}
    for rows in predictions_by_split(predictions).values():
        refs.update({r["msgid"]: r["reference"] for r in rows})
    rows = [json.loads(line) for line in path.open()]
    prose = [r for r in rows if r["msgid"] in refs and refs[r["msgid"]] != r["msgid"]]
    distinct = sum(len(set(r["answered"])) for r in prose) / len(prose)
    print(f"{len(prose)} prose sources, {distinct:.2f} distinct candidates each")
    chrf, chrf1, chrf4, bleu = _chrf(), _chrf(beta=1), _chrf(char_order=4), _bleu_zh()

    def corpus(pick: Callable[[dict], str]) -> float:
        outputs = [pick(r) for r in prose]
        ref_list = [[refs[r["msgid"]] for r in prose]]
        return round(CHRF().corpus_score(outputs, ref_list).score, 2)

    def mbr(field: str, utility, weight: float = 0.0) -> Callable[[dict], str]:
        return lambda r: r["answered"][
            consensus_pick(r[field], utility, r["token_confidence"], weight)
        ]

    rules = {
        "greedy": lambda r: r["answered"][0],
        "consensus chrF, raw texts": mbr("raw", chrf),
        "consensus chrF, answered texts": mbr("answered", chrf),
        "  + 0.1 x log token confidence": mbr("answered", chrf, 0.1),
        "consensus chrF beta 1, answered": mbr("answered", chrf1),
        "consensus chrF order 4, answered": mbr("answered", chrf4),
        "consensus BLEU(zh), answered": mbr("answered", bleu),
        "highest token confidence": lambda r: r["answered"][
            max(range(len(r["raw"])), key=lambda i: (r["token_confidence"][i] or 0, -i))
        ],
        "oracle (closest to the reference)": lambda r: max(
            r["answered"], key=lambda a: chrf(a, refs[r["msgid"]])
        ),
    }
    if mix is not None:
        samples = {r["msgid"]: r for r in map(json.loads, mix.open())}
        n = len(prose[0]["answered"])
        for k in (3, 5):

            def mixed(r: dict, k: int = k) -> str:
                own = r["answered"][1 : 1 + min(k, r["variants"])]
                rest = samples[r["msgid"]]["answered"][1 : n - len(own)]
                texts = [r["answered"][0], *own, *rest]
                return texts[consensus_pick(texts, chrf)]

            rules[f"up to {k} variants + samples, answered"] = mixed
    base = None
    for name, pick in rules.items():
        value = corpus(pick)
        base = value if base is None else base
        print(f"{name:38s} {value:6.2f} {value - base:+6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run polingo eval, recording every candidate")
    rec.add_argument("out", type=Path)
    rec.add_argument("--source", choices=["samples", "variants"], default="samples")
    rec.add_argument("--min-p", type=float, default=0.0, help="vLLM's min_p for the samples")
    sco = sub.add_parser("score", help="selection rules on a recording")
    sco.add_argument("recording", type=Path)
    sco.add_argument("predictions", type=Path, help="the eval's report/predictions.jsonl")
    sco.add_argument("--mix", type=Path, help="a samples recording to mix with variants")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    if args.command == "record":  # polingo eval's arguments follow "--"
        return record(args.out, args.source, argv[cut + 1 :], args.min_p)
    score(args.recording, args.predictions, args.mix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
