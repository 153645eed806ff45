"""The prompt contract and the prompt builder: the one definition of how a
(source -> translation) pair becomes tokens, shared by training, evaluation and serving.

A model served with a different prompt than it was trained with translates badly, so
nothing outside this module builds prompts. The contract's settings travel in each
adapter's manifest (``PromptContract``); ``PromptBuilder(contract, tokenizer, memory,
terms)`` applies every switch of it: placeholders (whole items, or around link labels),
memory examples, matched terms, and after generation the post-editing. The service
renders requests with the builder of the adapter it serves; training encodes its pairs
with the same builder.

Examples are shown as the catalog has them (raw markup, the human label of a link):
placeholders appear only in the text to translate, so their numbers are unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import msgspec

from core.markup import MARKUP_RE, markup_items, markup_key, missing_and_added, split_titled
from core.memory import TranslationMemory
from core.postedit import post_edit
from core.terms import Term, TermMatcher

if TYPE_CHECKING:  # core.retrieval imports bm25s (numba): only contracts with examples need it
    from core.retrieval import Example, ExampleIndex

# Version 1: the prompt of zh-tw@v1 (placeholders for whole markup items). Version 2
# adds the switches below, version 3 the update mode; every switch off is version 1's
# behaviour, exactly.
CONTRACT_VERSION = 3
LEGACY_VERSION = 1
V2_VERSION = 2

INSTRUCTION = (
    "Translate the following Python documentation text from English to Traditional "
    "Chinese as used in Taiwan. Keep reST markup, placeholders such as \u27e61\u27e7, "
    "code, identifiers and URLs exactly as they are."
)
# Update mode: the English source of a translated entry changed (a fuzzy entry after
# msgmerge); the model edits the human's translation instead of starting over.
UPDATE_INSTRUCTION = (
    "The English source of a Python documentation text changed. Update its Traditional "
    "Chinese translation as used in Taiwan to the new source: keep the previous "
    "translation's wording and change only what the change of the source asks for. Keep "
    "reST markup, placeholders such as \u27e61\u27e7, code, identifiers and URLs exactly "
    "as they are."
)

# Llama 3.x chat templates print today's date into the system turn unless told
# otherwise; a fixed date keeps training and serving prompts identical.
_TEMPLATE_KWARGS = {"date_string": "01 Jan 2025"}

# End-of-turn markers of the chat formats we support, besides the tokenizer's eos.
_END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")

_PLACEHOLDER_RE = re.compile("\u27e6(\\d+)\u27e7")

# Decoding: when a greedy translation drops, repeats or invents a placeholder, this many
# candidates are sampled and the one that keeps the markup best replaces it.
MARKUP_RETRIES = 8
RETRY_TEMPERATURE = 0.7
# With --candidates N > 1, the N-1 samples beside the greedy draft (the default of
# Settings.consensus_temperature): cooler than the markup retries (which must find a
# different output), so the candidates stay close enough to agree. Consensus prose gain over
# greedy on the pair split: zh-tw@v3 +1.04 at 0.7, +1.81 at 0.4; zh-tw@v4 +0.61 at 0.4.
CONSENSUS_TEMPERATURE = 0.4


class PromptContract(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the contract that an adapter was trained with."""

    version: int = LEGACY_VERSION
    # Replace markup items by numbered placeholders so the model cannot garble them.
    protect_markup: bool = True
    # Version 2 switches (PromptBuilder applies them).
    # Titled roles and links: placeholders around the label (⟦1⟧label⟦2⟧), so the model
    # translates it; role and target stay protected.
    translate_labels: bool = False
    # The k most similar human pairs of the adapter's memory, shown in the prompt.
    examples: int = 0
    # Glossary terms found in the source (whole words), shown in the prompt.
    terms: bool = False
    # After generation: simplified characters converted, escaped spaces inserted.
    post_edit: bool = False
    # Version 3: update mode. Besides plain pairs, the model learns (previous source,
    # previous translation, new source) -> new translation, and the service answers
    # items that carry a previous translation that way.
    update: bool = False
    # Examples only when their word overlap with the source (core.retrieval.similarity)
    # is at least this, so an unrelated page gets fewer or none (issue 42); 0: any.
    min_similarity: float = 0.0

    def __post_init__(self) -> None:
        if self.examples < 0:
            raise ValueError("contract.examples must be >= 0")
        if not 0.0 <= self.min_similarity <= 1.0:
            raise ValueError("contract.min_similarity must lie in [0, 1]")
        if self.uses_v2() and self.version < V2_VERSION:
            raise ValueError(
                "contract.translate_labels/examples/terms/post_edit need contract version "
                f"{V2_VERSION} (got {self.version})"
            )
        if self.update and self.version < CONTRACT_VERSION:
            raise ValueError(
                f"contract.update needs contract version {CONTRACT_VERSION} (got {self.version})"
            )
        if self.translate_labels and not self.protect_markup:
            raise ValueError("contract.translate_labels needs protect_markup")

    def uses_v2(self) -> bool:
        return (
            self.translate_labels
            or self.examples > 0
            or self.terms
            or self.post_edit
            or self.min_similarity > 0
        )

    def with_update(self) -> PromptContract:
        """This contract with the update mode on (version 3)."""
        if self.update:
            return self
        version = max(self.version, CONTRACT_VERSION)
        return msgspec.structs.replace(self, version=version, update=True)


class Previous(NamedTuple):
    """What an entry said before its source changed (update mode)."""

    source: str  # the previous msgid (msgmerge's "#| msgid")
    translation: str  # the human translation of it


# The contracts a new adapter can be trained with (`polingo train --contract NAME`);
# DEFAULT_PRESET is the one default of every command that trains.
CONTRACT_PRESETS = {
    "v1": PromptContract(),
    "v2": PromptContract(version=2, translate_labels=True, examples=4, terms=True, post_edit=True),
    "raw": PromptContract(protect_markup=False),
    # v1 and v2 with the update mode (what `--updates FILE` turns on)
    "v1-update": PromptContract(version=3, update=True),
    "v2-update": PromptContract(
        version=3, translate_labels=True, examples=4, terms=True, post_edit=True, update=True
    ),
}
DEFAULT_PRESET = "v1"


def default_contract() -> PromptContract:
    return CONTRACT_PRESETS[DEFAULT_PRESET]


def contract_preset(spec: str) -> PromptContract:
    """NAME[:SWITCH=VALUE,...] -> the PromptContract it names, with some switches
    changed, for ablations: ``v2:examples=0``, ``v2:terms=off``. Raises ValueError with
    a message for people."""
    name, _, changes = spec.partition(":")
    if name not in CONTRACT_PRESETS:
        raise ValueError(f"unknown contract {name!r} (use {', '.join(CONTRACT_PRESETS)})")
    contract = CONTRACT_PRESETS[name]
    switches = {f: type(getattr(contract, f)) for f in contract.__struct_fields__}
    overrides: dict[str, object] = {}
    for change in filter(None, changes.split(",")):
        key, _, value = change.partition("=")
        if key not in switches or key == "version":
            known = ", ".join(k for k in switches if k != "version")
            raise ValueError(f"unknown contract switch {key!r} (use {known})")
        if key == "update" and value.lower() in ("on", "true", "1"):
            contract = contract.with_update()
        try:
            overrides[key] = _switch_value(switches[key], value)
        except ValueError:
            raise ValueError(
                f"contract switch {key}: {value!r} is not a {switches[key].__name__}"
            ) from None
    try:
        return msgspec.structs.replace(contract, **overrides)
    except ValueError as exc:
        raise ValueError(f"contract {spec!r}: {exc}") from None


def _switch_value(kind: type, value: str) -> object:
    if kind is bool:
        table = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
        if value.lower() not in table:
            raise ValueError(value)
        return table[value.lower()]
    return kind(value)


class Tokenizer(Protocol):  # the part of a Hugging Face tokenizer we rely on
    eos_token_id: int | None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...
    def convert_tokens_to_ids(self, tokens: Any) -> Any: ...
    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


def placeholder(index: int) -> str:
    return f"\u27e6{index}\u27e7"


def protect(source: str, target: str | None = None) -> tuple[str, str | None, list[str]]:
    """Replace markup items of ``source`` by placeholders ⟦1⟧, ⟦2⟧ …

    With a ``target`` (training), only items that the target also carries verbatim
    are replaced, in both texts; the others stay as written. Returns the protected
    source, the protected target and the items, placeholder n being ``items[n-1]``.
    """
    items: list[str] = []
    for item in markup_items(source):
        if item not in items and (target is None or item in target):
            items.append(item)
    # Longest first, so an item that contains another is replaced whole.
    order = sorted(range(len(items)), key=lambda i: -len(items[i]))
    for i in order:
        source = source.replace(items[i], placeholder(i + 1))
        if target is not None:
            target = target.replace(items[i], placeholder(i + 1))
    return source, target, items


def protect_labels(
    source: str, target: str | None = None
) -> tuple[str, str | None, list[str], list[tuple[int, int]]]:
    """protect() for contracts with translate_labels: a titled role or link becomes
    ⟦a⟧label⟦b⟧ (⟦a⟧ = ":ref:`", ⟦b⟧ = " <target>`"), so its label stays text.

    With a ``target``, an item is protected only where the target has it too (a titled
    one: the same role and target, any label), and the target keeps its own label.
    Returns the protected texts, the items and the (a, b) placeholder pairs.
    """
    items: list[str] = []
    whole: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    target_items = markup_items(target) if target is not None else []
    pending: dict[str, list[tuple[int, int]]] = {}  # key -> placeholders for the target

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    def protect_source(match: re.Match[str]) -> str:
        item = match.group(0)
        parts = split_titled(item)
        if parts is None:
            if target is not None and item not in target_items:
                return item
            if item not in whole:
                whole[item] = add(item)
            return placeholder(whole[item])
        key = markup_key(item)
        wanted = sum(markup_key(t) == key for t in target_items)
        if target is not None and len(pending.get(key, [])) >= wanted:
            return item
        head, label, tail = parts
        pair = (add(head), add(tail))
        pairs.append(pair)
        pending.setdefault(key, []).append(pair)
        return placeholder(pair[0]) + label + placeholder(pair[1])

    protected = MARKUP_RE.sub(protect_source, source)
    if target is None:
        return protected, None, items, pairs

    return protected, _with_placeholders(target, whole, pending), items, pairs


def _with_placeholders(
    text: str, whole: dict[str, int], pending: dict[str, list[tuple[int, int]]]
) -> str:
    """``text`` with the items of a source's protection replaced by their placeholders:
    a whole item by its number, a titled one by its pair around its own label (the label
    may differ: it is the translation's). Items the source lacks stay as written."""

    def swap(match: re.Match[str]) -> str:
        item = match.group(0)
        parts = split_titled(item)
        if parts is None:
            return placeholder(whole[item]) if item in whole else item
        queue = pending.get(markup_key(item))
        if not queue:
            return item
        a, b = queue.pop(0)
        return placeholder(a) + parts[1] + placeholder(b)

    return MARKUP_RE.sub(swap, text)


def restore(text: str, items: list[str]) -> str:
    """Put the markup items back in place of their placeholders."""

    def put_back(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return items[n - 1] if 1 <= n <= len(items) else match.group(0)

    return _PLACEHOLDER_RE.sub(put_back, text)


def unknown_placeholders(text: str) -> list[str]:
    """Placeholders left in a restored text (the model invented them)."""
    return _PLACEHOLDER_RE.findall(text)


def protect_with(text: str, items: list[str], pairs: list[tuple[int, int]]) -> str:
    """``text`` with the markup items of another text's protection (``items``, ``pairs``
    from protect() or protect_labels()) replaced by the same placeholders; items it does
    not have stay as written. Update mode: the previous source and translation speak the
    placeholders of the new source, so that the model can copy them."""
    in_pairs = {n for pair in pairs for n in pair}
    whole = {item: n for n, item in enumerate(items, 1) if n not in in_pairs}
    if not pairs:  # as protect() does: longest first, so an item inside another stays
        for item in sorted(whole, key=len, reverse=True):
            text = text.replace(item, placeholder(whole[item]))
        return text
    pending: dict[str, list[tuple[int, int]]] = {}
    for a, b in pairs:
        pending.setdefault(items[a - 1] + items[b - 1].lstrip(), []).append((a, b))
    return _with_placeholders(text, whole, pending)


def messages(
    source: str,
    msgctxt: str | None = None,
    examples: Sequence[Example] = (),
    terms: Sequence[Term] = (),
    previous: Previous | None = None,
) -> list[dict[str, str]]:
    """The chat messages for one source text (already protected if the contract says so).
    Without examples, terms and previous: version 1's prompt, exactly."""
    context = f"\nContext: {msgctxt}" if msgctxt else ""
    if not examples and not terms and previous is None:
        return [{"role": "user", "content": f"{INSTRUCTION}{context}\n\n{source}"}]
    parts = [f"{INSTRUCTION if previous is None else UPDATE_INSTRUCTION}{context}"]
    if terms:
        parts.append("Terms:\n" + "\n".join(f"- {t.source}: {t.target}" for t in terms))
    for example in examples:
        parts.append(f"Example:\n{example.msgid}\n=>\n{example.msgstr}")
    if previous is None:
        parts.append(f"Translate:\n{source}")
    else:
        parts.append(f"Previous source:\n{previous.source}")
        parts.append(f"Previous translation:\n{previous.translation}")
        parts.append(f"New source:\n{source}")
    return [{"role": "user", "content": "\n\n".join(parts)}]


def end_of_turn_text(tokenizer: Tokenizer) -> str:
    """What the chat template writes after an assistant message (e.g. '<end_of_turn>\\n')."""
    marker = "\u2063POLINGO\u2063"
    convo = messages("x") + [{"role": "assistant", "content": marker}]
    full = tokenizer.apply_chat_template(convo, tokenize=False, **_TEMPLATE_KWARGS)
    return full[full.rindex(marker) + len(marker) :]


def stop_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Token ids that end a generation: eos and the chat format's end-of-turn."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ids.update(vocab[t] for t in _END_OF_TURN_TOKENS if t in vocab)
    return sorted(ids)


def max_new_tokens(prompt_source_tokens: int, cap: int = 1024) -> int:
    """Generation budget scaled from the source length, so a runaway ends early.
    zh-TW output is seldom longer in tokens than its English source."""
    return min(cap, 2 * prompt_source_tokens + 16)


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
    previous: Previous | None = None  # update mode: as the model sees it (placeholders in)


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
        self.index: ExampleIndex | None = None
        if memory is not None and contract.examples:
            from core.retrieval import ExampleIndex

            self.index = ExampleIndex(memory.pairs())
        self.matcher = TermMatcher(terms or []) if contract.terms else None

    # -- sources -> prompts ------------------------------------------------------------

    def _protect(
        self, source: str, target: str | None = None
    ) -> tuple[str, str | None, list[str], list[tuple[int, int]]]:
        if not self.contract.protect_markup:
            return source, target, [], []
        if self.contract.translate_labels:
            return protect_labels(source, target)
        protected, protected_target, items = protect(source, target)
        return protected, protected_target, items, []

    def examples_for(
        self, sources: Sequence[str], exclude: Sequence[str | None] | None = None
    ) -> list[list[Example]]:
        """The memory examples of many sources at once (one batched retrieval)."""
        if self.index is None:
            return [[] for _ in sources]
        return self.index.search(
            sources, self.contract.examples, exclude, min_similarity=self.contract.min_similarity
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batch_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [
            list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ]

    def _previous(
        self, previous: Previous | None, items: list[str], pairs: list[tuple[int, int]]
    ) -> Previous | None:
        """The previous texts with the new source's placeholders (update mode only)."""
        if previous is None:
            return None
        if not self.contract.update:
            raise ValueError("this adapter's prompt contract has no update mode")
        if not self.contract.protect_markup:
            return previous
        return Previous(*(protect_with(text, items, pairs) for text in previous))

    def _chat_text(
        self,
        source: str,
        msgctxt: str | None,
        examples: Sequence[Example],
        terms: Sequence[Term],
        previous: Previous | None = None,
    ) -> str:
        convo = messages(source, msgctxt, examples, terms, previous)
        return self.tokenizer.apply_chat_template(
            convo, add_generation_prompt=True, tokenize=False, **_TEMPLATE_KWARGS
        )

    def _prompt_ids(
        self,
        source: str,
        msgctxt: str | None,
        examples: Sequence[Example],
        terms: Sequence[Term],
        previous: Previous | None = None,
    ) -> list[int]:
        return self._ids(self._chat_text(source, msgctxt, examples, terms, previous))

    def prompt(
        self,
        source: str,
        msgctxt: str | None = None,
        *,
        exclude: str | None = None,
        examples: list[Example] | None = None,
        previous: Previous | None = None,
    ) -> Prepared:
        """The prompt of one source. ``exclude``: a msgid the examples must not be
        (never the source itself either); ``examples``: already retrieved ones;
        ``previous``: update mode (the contract must have it)."""
        if examples is None:
            examples = self.examples_for([source], [exclude])[0]
        return self.prompts([source], [msgctxt], [examples], [previous])[0]

    def prompts(
        self,
        sources: Sequence[str],
        msgctxts: Sequence[str | None],
        examples: Sequence[list[Example]],
        previous: Sequence[Previous | None] | None = None,
    ) -> list[Prepared]:
        """The prompts of many sources with their retrieved examples, in two batched
        tokenizer calls (the fast tokenizer encodes a batch on all cores): the sources,
        and each prompt with all its examples. A prompt that leaves too little room is
        built again, dropping examples (``_fit``). ``previous[i]``: update mode."""
        protected = [self._protect(source) for source in sources]
        olds = [
            self._previous(old, p[2], p[3])
            for p, old in zip(protected, previous or [None] * len(sources), strict=True)
        ]
        terms = [self.matcher.match(s) if self.matcher is not None else [] for s in sources]
        counts = [len(ids) for ids in self._batch_ids([p[0] for p in protected])]
        texts = [
            self._chat_text(p[0], ctx, ex, t, old)
            for p, ctx, ex, t, old in zip(protected, msgctxts, examples, terms, olds, strict=True)
        ]
        out = []
        for i, ids in enumerate(self._batch_ids(texts)):
            source_text, _, items, pairs = protected[i]
            shown, ids = self._fit(
                source_text, msgctxts[i], examples[i], terms[i], 0, counts[i], ids, olds[i]
            )
            out.append(
                Prepared(sources[i], source_text, items, pairs, shown, terms[i], ids,
                         counts[i], msgctxts[i], olds[i])
            )  # fmt: skip
        return out

    def example(
        self,
        source: str,
        target: str,
        msgctxt: str | None = None,
        *,
        examples: list[Example] | None = None,
        previous: Previous | None = None,
    ) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of a training pair; its examples leave the pair out.
        The loss covers the translation and its end-of-turn marker only. ``previous``:
        an update triple (update mode), the new translation being ``target``."""
        protected, protected_target, items, pairs = self._protect(source, target)
        assert protected_target is not None
        old = self._previous(previous, items, pairs)
        if examples is None:
            examples = self.examples_for([source], [source])[0]
        terms = self.matcher.match(source) if self.matcher is not None else []
        completion = self._ids(protected_target + end_of_turn_text(self.tokenizer))
        source_tokens = len(self._ids(protected)) if self.max_length is not None else 0
        _, prompt = self._fit(
            protected, msgctxt, examples, terms, len(completion), source_tokens, None, old
        )
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
        previous: Previous | None = None,
    ) -> tuple[list[Example], list[int]]:
        """Drop examples, least similar first, until the prompt leaves room for the
        translation within ``max_length``: the serving budget for the source, or the
        training completion where that is longer. So a training prompt is the prompt the
        service builds for the same source. ``first_ids``: the prompt with all the
        examples, already tokenised."""
        examples = list(examples)
        if self.max_length is not None:
            room = max(room, max_new_tokens(source_tokens))
        ids = (
            first_ids
            if first_ids is not None
            else self._prompt_ids(protected, msgctxt, examples, terms, previous)
        )
        while examples and self.max_length is not None and len(ids) + room > self.max_length:
            examples.pop()
            ids = self._prompt_ids(protected, msgctxt, examples, terms, previous)
        return examples, ids

    # -- raw output -> catalog text ----------------------------------------------------

    def finish(self, raw_output: str, prepared: Prepared) -> str:
        """Catalog text: placeholders restored, then the post-editing if the contract
        asks for it."""
        text = raw_output.strip()
        if self.contract.protect_markup:
            text = restore(text, prepared.markup)
        return post_edit(text, prepared.text) if self.contract.post_edit else text

    # -- the markup retry -------------------------------------------------------------

    def markup_damage(self, prepared: Prepared, output: str) -> tuple[int, int]:
        """(items lost, items added) of raw output: placeholders under protect_markup,
        markup items otherwise; a link whose label placeholders are missing, swapped or
        empty-handed counts as lost."""
        find = _PLACEHOLDER_RE.findall if self.contract.protect_markup else markup_items
        missing, extra = missing_and_added(find(prepared.source), find(output))
        lost, added = len(missing), len(extra)
        if prepared.pairs:
            matches = _PLACEHOLDER_RE.finditer(output)
            found = [(m.start(), m.end(), int(m.group(1))) for m in matches]
            for a, b in prepared.pairs:
                heads = [end for _, end, n in found if n == a]
                tails = [start for start, _, n in found if n == b]
                # (a missing or repeated placeholder is already counted above)
                if len(heads) == 1 and len(tails) == 1 and not output[heads[0] : tails[0]].strip():
                    lost += 1  # swapped (an empty slice) or no label between them
        return lost, added

    def keeps_markup(self, prepared: Prepared, raw_output: str) -> bool:
        """Whether raw model output carries the markup of its prepared source: each
        placeholder exactly as often, or, without placeholders, every markup item."""
        lost, added = self.markup_damage(prepared, raw_output)
        return lost == 0 and (added == 0 or not self.contract.protect_markup)

    def best_for_markup(self, prepared: Prepared, candidates: list[str]) -> str:
        """The first candidate that keeps the markup, else the one that loses the fewest
        items (then adds the fewest); pass the greedy translation first so ties keep it."""
        # min keeps the first of equals
        return min(candidates, key=lambda output: self.markup_damage(prepared, output))
