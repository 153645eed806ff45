"""Terms the corpus translates one way, mined from its training pairs (issue 42). CPU only.

    python bench/mine_terms.py --corpus DOCS_DIR [--glossary TERMS.jsonl] -o TERMS.jsonl

On unseen pages the memory's examples are unrelated, but the project's terminology still
holds. The glossary names about a hundred terms; the training pairs show many more (a
parameter's name, a data structure). For each English word or two-word phrase of the
training split's prose (the pair and document splits are never read), the Chinese 2-4
character sequence that co-occurs with it most (Dice coefficient over pairs) is its
term when the association is strong and the translators do not keep the English word
itself. Glossary terms (``--glossary``: an adapter's terms.jsonl) come first and win.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data import load_corpus  # noqa: E402

# reST spans whose text is code or a reference target, not prose to translate
_CODE = re.compile(r"``[^`]+``|:[\w:]+:`[^`]+`|`[^`]+`_*")
_WORD = re.compile(r"[A-Za-z][a-z]+")
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
MAX_CHARS = 6
STOP = frozenset(
    """the and for that this with are from not but can its has have was were will which
    when where what who how any all each other than then them they their there these those
    into onto over under also only such same more most less some many much may might must
    should would could does did done being been use used using see returns return value
    values true false none default new one two first last following example examples note
    given set sets get gets way case cases like just very well even our your you now next""".split()  # noqa: SIM905
)


def english_terms(text: str) -> set[str]:
    words = [w.lower() for w in _WORD.findall(_CODE.sub(" ", text))]
    words = [w if len(w) > 2 and w not in STOP else "" for w in words]
    grams = {w for w in words if w}
    grams |= {f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if a and b}
    return grams


def chinese_grams(text: str) -> set[str]:
    grams = set()
    for run in _HAN_RUN.findall(_CODE.sub(" ", text)):
        for n in range(2, MAX_CHARS + 1):
            grams.update(run[i : i + n] for i in range(len(run) - n + 1))
    return grams


def whole_word(gram: str, texts: list[str]) -> str:
    """``gram`` grown by a character on either side while that longer sequence holds
    90% of its occurrences: 案描述器 is nearly always part of 檔案描述器."""
    while len(gram) < MAX_CHARS:
        around: Counter[str] = Counter()
        total = 0
        for text in texts:
            start = text.find(gram)
            while start != -1:
                total += 1
                if start > 0:
                    around[text[start - 1] + gram] += 1
                end = start + len(gram)
                if end < len(text):
                    around[gram + text[end]] += 1
                start = text.find(gram, start + 1)
        # ties broken by the text itself: sets iterate in a different order each run
        longer, count = max(around.items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
        if count < 0.9 * total or not _HAN_RUN.fullmatch(longer):
            return gram
        gram = longer
    return gram


def mine(
    pairs: list[tuple[str, str]], min_pairs: int, min_dice: float, max_pairs: int
) -> list[dict]:
    en = [english_terms(s) for s, _ in pairs]
    zh = [chinese_grams(t) for _, t in pairs]
    kept_english = [t.lower() for _, t in pairs]
    en_df = Counter(g for grams in en for g in grams)
    zh_df = Counter(g for grams in zh for g in grams)
    where: dict[str, list[int]] = defaultdict(list)
    for k, grams in enumerate(en):
        for g in grams:
            # the most frequent words the model has seen translated hundreds of times
            if min_pairs <= en_df[g] <= max_pairs:
                where[g].append(k)
    found = []
    for term, rows in sorted(where.items()):
        # the translators keep the English word (a name, a keyword): no Chinese term
        kept = sum(term in kept_english[k] for k in rows)
        if kept >= 0.3 * len(rows):
            continue
        co = Counter(g for k in rows for g in zh[k] if zh_df[g] >= min_pairs)
        if not co:
            continue
        scored = {g: 2 * c / (len(rows) + zh_df[g]) for g, c in co.items()}
        best = max(scored, key=lambda g: (scored[g], len(g), g))
        # a longer sequence around it that is nearly as strong is the whole term
        longer = [g for g in scored if best in g and g != best and scored[g] >= 0.97 * scored[best]]
        if longer:
            best = max(longer, key=lambda g: (len(g), scored[g], g))
        if scored[best] >= min_dice and co[best] >= 0.5 * len(rows):
            target = whole_word(best, [pairs[k][1] for k in rows])
            dice = round(scored[best], 3)
            found.append({"source": term, "target": target, "dice": dice, "pairs": len(rows)})
    # a phrase whose words already have the same term adds nothing; a target claimed by
    # English terms with no word in common comes from a repeated sentence, not a term
    by_source = {t["source"]: t["target"] for t in found}
    claims: dict[str, list[set[str]]] = defaultdict(list)
    for t in found:
        claims[t["target"]].append(set(t["source"].split()))
    return [
        t
        for t in found
        if all(words & set(t["source"].split()) for words in claims[t["target"]])
        and (
            " " not in t["source"]
            or all(by_source.get(w) != t["target"] for w in t["source"].split())
        )
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a .po tree (training split)")
    ap.add_argument("--glossary", type=Path, help="terms.jsonl whose terms come first and win")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--min-pairs", type=int, default=8)
    ap.add_argument("--max-pairs", type=int, default=150)
    ap.add_argument("--min-dice", type=float, default=0.6)
    args = ap.parse_args()
    corpus = load_corpus(args.corpus)
    train = [(p.msgid, p.msgstr) for p in corpus.splits().train if p.msgstr != p.msgid]
    mined = mine(train, args.min_pairs, args.min_dice, args.max_pairs)
    glossary = []
    if args.glossary:
        glossary = [json.loads(line) for line in args.glossary.read_text().splitlines() if line]
    known = {t["source"].lower() for t in glossary}
    extra = [t for t in mined if t["source"] not in known]
    with args.out.open("w", encoding="utf-8") as out:
        for t in glossary + extra:
            term = {"source": t["source"], "target": t["target"]}
            out.write(json.dumps(term, ensure_ascii=False) + "\n")
    print(
        f"{len(train)} training prose pairs; {len(mined)} mined terms, {len(extra)} new "
        f"beside {len(glossary)} glossary terms -> {args.out}"
    )
    for t in sorted(extra, key=lambda t: -t["pairs"])[:40]:
        print(f"  {t['source']:<28} {t['target']:<8} dice {t['dice']:.2f}  in {t['pairs']} pairs")


if __name__ == "__main__":
    main()
