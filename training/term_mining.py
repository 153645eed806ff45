"""Terms a corpus translates one way, mined from its training pairs (issue 42):
`polingo data terms TREE -o TERMS.jsonl`, for `polingo train --terms`.

On unseen pages the memory's examples are unrelated, but the project's terminology still
holds. A glossary names about a hundred terms; the training pairs show many more (a
parameter's name, a data structure). For each English word or two-word phrase of the
training split's prose (the pair and document splits are never read), the Chinese 2-6
character sequence that co-occurs with it most (Dice coefficient over pairs) is its term
when the association is strong and the translators do not keep the English word itself.
Terms of the tree's ``glossary.po`` are left out: training reads them from there and they
win. 2024-10-19 gives 445 terms in about 5 s, such as ``file descriptor`` -> ``檔案描述器``;
some are wrong (``weekday`` -> ``一天``), so read them before training on them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from core.fsutil import atomic_write
from core.terms import Term, corpus_terms, terms_text

MIN_PAIRS = 8  # an English term in fewer pairs is too rare to judge
MAX_PAIRS = 150  # the most frequent words the model has seen translated hundreds of times
MIN_DICE = 0.6

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
    """The words (3 letters up, not stop words) and two-word phrases of a source's prose."""
    words = [w.lower() for w in _WORD.findall(_CODE.sub(" ", text))]
    words = [w if len(w) > 2 and w not in STOP else "" for w in words]
    grams = {w for w in words if w}
    grams |= {f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if a and b}
    return grams


def chinese_grams(text: str) -> set[str]:
    """Every 2 to MAX_CHARS character sequence of a translation's Chinese runs."""
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
    """Terms ({source, target, dice, pairs}) of (English, Chinese) prose pairs."""
    en = [english_terms(s) for s, _ in pairs]
    zh = [chinese_grams(t) for _, t in pairs]
    kept_english = [t.lower() for _, t in pairs]
    en_df = Counter(g for grams in en for g in grams)
    zh_df = Counter(g for grams in zh for g in grams)
    where: dict[str, list[int]] = defaultdict(list)
    for k, grams in enumerate(en):
        for g in grams:
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


def mine_corpus(
    tree: Path,
    *,
    heldout_percent: float = 3.0,
    document_percent: float = 7.0,
    min_pairs: int = MIN_PAIRS,
    max_pairs: int = MAX_PAIRS,
    min_dice: float = MIN_DICE,
) -> tuple[int, list[dict]]:
    """(training prose pairs read, terms mined) of a .po tree, less its glossary's."""
    from training.data import load_corpus

    corpus = load_corpus(tree)
    splits = corpus.splits(heldout_percent, document_percent)
    train = [(p.msgid, p.msgstr) for p in splits.train if p.msgstr != p.msgid]
    known = {t.source.lower() for t in corpus_terms(tree)}
    mined = mine(train, min_pairs, min_dice, max_pairs)
    return len(train), [t for t in mined if t["source"] not in known]


def terms_command(
    tree: Path, output: Path, *, min_pairs: int, max_pairs: int, min_dice: float
) -> int:
    """`polingo data terms TREE -o FILE`: mine, write (whole or not at all), say how many
    and show the most frequent."""
    if not tree.is_dir():
        print(f"error: {tree}: not a folder of .po files", file=sys.stderr)
        return 2
    read, terms = mine_corpus(tree, min_pairs=min_pairs, max_pairs=max_pairs, min_dice=min_dice)
    atomic_write(output, terms_text(Term(t["source"], t["target"]) for t in terms).encode())
    print(f"{read} training prose pairs; {len(terms)} terms -> {output}")
    for t in sorted(terms, key=lambda t: -t["pairs"])[:20]:
        print(f"  {t['source']:<28} {t['target']:<8} dice {t['dice']:.2f}  in {t['pairs']} pairs")
    return 0
