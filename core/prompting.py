"""One prompt builder for training and serving, so their prompts cannot drift.

``PromptBuilder(contract, tokenizer, memory, terms)`` applies every switch of the
contract: placeholders (whole items, or around link labels), memory examples, matched
terms, and after generation the post-editing. With a version-1 contract it produces
exactly the tokens of ``core.contract``'s functions (tests/test_prompting.py checks).

Examples are shown as the catalog has them (raw markup, the human label of a link):
placeholders appear only in the text to translate, so their numbers are unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from core import contract as c
from core.contract import PromptContract, Tokenizer
from core.memory import TranslationMemory
from core.postedit import post_edit
from core.retrieval import Example, ExampleIndex
from core.terms import Term, TermMatcher

_PLACEHOLDER_RE = re.compile("\u27e6(\\d+)\u27e7")


class Prepared(msgspec.Struct, frozen=True):
    """One source made ready for the model."""

    text: str  # the original source
    source: str  # as the model sees it (placeholders in)
    markup: list[str]  # placeholder n stands for markup[n-1]
    pairs: list[tuple[int, int]]  # (head, tail) placeholders around a link label
    examples: list[Example]
    terms: list[Term]
    prompt_ids: list[int]
    source_tokens: int  # tokens of ``source``, which the generation budget scales from
    msgctxt: str | None = None


def messages(
    source: str,
    msgctxt: str | None = None,
    examples: Sequence[Example] = (),
    terms: Sequence[Term] = (),
) -> list[dict[str, str]]:
    """The chat messages; without examples and terms, contract.messages()' exactly."""
    if not examples and not terms:
        return c.messages(source, msgctxt)
    context = f"\nContext: {msgctxt}" if msgctxt else ""
    parts = [f"{c.INSTRUCTION}{context}"]
    if terms:
        parts.append("Terms:\n" + "\n".join(f"- {t.source}: {t.target}" for t in terms))
    for example in examples:
        parts.append(f"Example:\n{example.msgid}\n=>\n{example.msgstr}")
    parts.append(f"Translate:\n{source}")
    return [{"role": "user", "content": "\n\n".join(parts)}]


class PromptBuilder:
    def __init__(
        self,
        contract: PromptContract,
        tokenizer: Tokenizer,
        memory: TranslationMemory | None = None,
        terms: Sequence[Term] | None = None,
        max_length: int | None = None,
    ) -> None:
        """``max_length``: the prompt plus its translation budget (see ``_fit``) must
        fit; examples are dropped, least similar first, until it does."""
        self.contract = contract
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.index = (
            ExampleIndex(memory.pairs()) if memory is not None and contract.examples else None
        )
        self.matcher = TermMatcher(terms or []) if contract.terms else None

    # -- sources -> prompts ------------------------------------------------------------

    def _protect(
        self, source: str, target: str | None = None
    ) -> tuple[str, str | None, list[str], list[tuple[int, int]]]:
        if not self.contract.protect_markup:
            return source, target, [], []
        if self.contract.translate_labels:
            return c.protect_labels(source, target)
        protected, protected_target, items = c.protect(source, target)
        return protected, protected_target, items, []

    def examples_for(
        self, sources: Sequence[str], exclude: Sequence[str | None] | None = None
    ) -> list[list[Example]]:
        """The memory examples of many sources at once (one batched retrieval)."""
        if self.index is None:
            return [[] for _ in sources]
        return self.index.search(sources, self.contract.examples, exclude)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batch_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [
            list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ]

    def _chat_text(
        self, source: str, msgctxt: str | None, examples: Sequence[Example], terms: Sequence[Term]
    ) -> str:
        convo = messages(source, msgctxt, examples, terms)
        return self.tokenizer.apply_chat_template(
            convo, add_generation_prompt=True, tokenize=False, **c._TEMPLATE_KWARGS
        )

    def _prompt_ids(
        self, source: str, msgctxt: str | None, examples: Sequence[Example], terms: Sequence[Term]
    ) -> list[int]:
        return self._ids(self._chat_text(source, msgctxt, examples, terms))

    def prompt(
        self,
        source: str,
        msgctxt: str | None = None,
        *,
        exclude: str | None = None,
        examples: list[Example] | None = None,
    ) -> Prepared:
        """The prompt of one source. ``exclude``: a msgid the examples must not be
        (never the source itself either); ``examples``: already retrieved ones."""
        if examples is None:
            examples = self.examples_for([source], [exclude])[0]
        return self.prompts([source], [msgctxt], [examples])[0]

    def prompts(
        self,
        sources: Sequence[str],
        msgctxts: Sequence[str | None],
        examples: Sequence[list[Example]],
    ) -> list[Prepared]:
        """The prompts of many sources with their retrieved examples, in two batched
        tokenizer calls (the fast tokenizer encodes a batch on all cores): the sources,
        and each prompt with all its examples. A prompt that leaves too little room is
        built again, dropping examples (``_fit``)."""
        protected = [self._protect(source) for source in sources]
        terms = [self.matcher.match(s) if self.matcher is not None else [] for s in sources]
        counts = [len(ids) for ids in self._batch_ids([p[0] for p in protected])]
        texts = [
            self._chat_text(p[0], ctx, ex, t)
            for p, ctx, ex, t in zip(protected, msgctxts, examples, terms, strict=True)
        ]
        out = []
        for i, ids in enumerate(self._batch_ids(texts)):
            source_text, _, items, pairs = protected[i]
            shown, ids = self._fit(
                source_text, msgctxts[i], examples[i], terms[i], 0, counts[i], first_ids=ids
            )
            out.append(
                Prepared(sources[i], source_text, items, pairs, shown, terms[i], ids,
                         counts[i], msgctxts[i])
            )  # fmt: skip
        return out

    def example(
        self,
        source: str,
        target: str,
        msgctxt: str | None = None,
        *,
        examples: list[Example] | None = None,
    ) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of a training pair; its examples leave the pair out.
        The loss covers the translation and its end-of-turn marker only."""
        protected, protected_target, _, _ = self._protect(source, target)
        assert protected_target is not None
        if examples is None:
            examples = self.examples_for([source], [source])[0]
        terms = self.matcher.match(source) if self.matcher is not None else []
        completion = self._ids(protected_target + c.end_of_turn_text(self.tokenizer))
        source_tokens = len(self._ids(protected)) if self.max_length is not None else 0
        _, prompt = self._fit(protected, msgctxt, examples, terms, len(completion), source_tokens)
        return prompt + completion, [-100] * len(prompt) + completion

    def _fit(
        self,
        protected: str,
        msgctxt: str | None,
        examples: Sequence[Example],
        terms: Sequence[Term],
        room: int,
        source_tokens: int,
        first_ids: list[int] | None = None,
    ) -> tuple[list[Example], list[int]]:
        """Drop examples, least similar first, until the prompt leaves room for the
        translation within ``max_length``: the serving budget for the source, or the
        training completion where that is longer. So a training prompt is the prompt the
        service builds for the same source. ``first_ids``: the prompt with all the
        examples, already tokenised."""
        examples = list(examples)
        if self.max_length is not None:
            room = max(room, c.max_new_tokens(source_tokens))
        ids = (
            first_ids
            if first_ids is not None
            else self._prompt_ids(protected, msgctxt, examples, terms)
        )
        while examples and self.max_length is not None and len(ids) + room > self.max_length:
            examples.pop()
            ids = self._prompt_ids(protected, msgctxt, examples, terms)
        return examples, ids

    # -- raw output -> catalog text ----------------------------------------------------

    def finish(self, raw_output: str, prepared: Prepared) -> str:
        """Catalog text: placeholders restored, then the post-editing if the contract
        asks for it."""
        text = c.finish_output(self.contract, raw_output, prepared.markup)
        return post_edit(text, prepared.text) if self.contract.post_edit else text


# -- the markup retry on Prepared ------------------------------------------------------


def markup_damage(contract: PromptContract, prepared: Prepared, output: str) -> tuple[int, int]:
    """(items lost, items added) of raw output; a link whose label placeholders are
    missing, swapped or empty-handed counts as lost."""
    lost, added = c._markup_damage(contract, prepared.source, output)
    if prepared.pairs:
        found = [(m.start(), m.end(), int(m.group(1))) for m in _PLACEHOLDER_RE.finditer(output)]
        for a, b in prepared.pairs:
            heads = [end for _, end, n in found if n == a]
            tails = [start for start, _, n in found if n == b]
            # (a missing or repeated placeholder is already counted above)
            if len(heads) == 1 and len(tails) == 1 and not output[heads[0] : tails[0]].strip():
                lost += 1  # swapped (an empty slice) or no label between them
    return lost, added


def keeps_markup(contract: PromptContract, prepared: Prepared, raw_output: str) -> bool:
    lost, added = markup_damage(contract, prepared, raw_output)
    return lost == 0 and (added == 0 or not contract.protect_markup)


def best_for_markup(contract: PromptContract, prepared: Prepared, candidates: list[str]) -> str:
    """The first candidate that keeps the markup best; pass the greedy one first."""
    return min(candidates, key=lambda output: markup_damage(contract, prepared, output))
