"""The prompt contract: the one definition of how a (source -> translation) pair
becomes tokens, shared by training, evaluation and serving.

A model served with a different prompt than it was trained with translates badly,
so nothing outside this module builds prompts. The contract's settings travel in
each adapter's manifest (``PromptContract``); the service renders requests with
the settings of the adapter it serves.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec

from core.markup import MARKUP_RE, markup_items, markup_key, missing_and_added, split_titled

# Version 1: the prompt of zh-tw@v1 (placeholders for whole markup items). Version 2
# adds the switches below; every switch off is version 1's behaviour, exactly.
CONTRACT_VERSION = 2
LEGACY_VERSION = 1

INSTRUCTION = (
    "Translate the following Python documentation text from English to Traditional "
    "Chinese as used in Taiwan. Keep reST markup, placeholders such as \u27e61\u27e7, "
    "code, identifiers and URLs exactly as they are."
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


class PromptContract(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the contract that an adapter was trained with."""

    version: int = LEGACY_VERSION
    # Replace markup items by numbered placeholders so the model cannot garble them.
    protect_markup: bool = True
    # Version 2 switches (core/prompting.py applies them).
    # Titled roles and links: placeholders around the label (⟦1⟧label⟦2⟧), so the model
    # translates it; role and target stay protected.
    translate_labels: bool = False
    # The k most similar human pairs of the adapter's memory, shown in the prompt.
    examples: int = 0
    # Glossary terms found in the source (whole words), shown in the prompt.
    terms: bool = False
    # After generation: simplified characters converted, escaped spaces inserted.
    post_edit: bool = False

    def __post_init__(self) -> None:
        if self.examples < 0:
            raise ValueError("contract.examples must be >= 0")
        if self.uses_v2() and self.version < CONTRACT_VERSION:
            raise ValueError(
                "contract.translate_labels/examples/terms/post_edit need contract version "
                f"{CONTRACT_VERSION} (got {self.version})"
            )
        if self.translate_labels and not self.protect_markup:
            raise ValueError("contract.translate_labels needs protect_markup")

    def uses_v2(self) -> bool:
        return self.translate_labels or self.examples > 0 or self.terms or self.post_edit


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

    def protect_target(match: re.Match[str]) -> str:
        item = match.group(0)
        parts = split_titled(item)
        if parts is None:
            return placeholder(whole[item]) if item in whole else item
        queue = pending.get(markup_key(item))
        if not queue:
            return item
        a, b = queue.pop(0)
        return placeholder(a) + parts[1] + placeholder(b)

    return protected, MARKUP_RE.sub(protect_target, target), items, pairs


def restore(text: str, items: list[str]) -> str:
    """Put the markup items back in place of their placeholders."""

    def put_back(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return items[n - 1] if 1 <= n <= len(items) else match.group(0)

    return _PLACEHOLDER_RE.sub(put_back, text)


def unknown_placeholders(text: str) -> list[str]:
    """Placeholders left in a restored text (the model invented them)."""
    return _PLACEHOLDER_RE.findall(text)


def messages(source: str, msgctxt: str | None = None) -> list[dict[str, str]]:
    """The chat messages for one source text (already protected if the contract says so)."""
    context = f"\nContext: {msgctxt}" if msgctxt else ""
    return [{"role": "user", "content": f"{INSTRUCTION}{context}\n\n{source}"}]


def prompt_text(tokenizer: Tokenizer, source: str, msgctxt: str | None = None) -> str:
    return tokenizer.apply_chat_template(
        messages(source, msgctxt), add_generation_prompt=True, tokenize=False, **_TEMPLATE_KWARGS
    )


def end_of_turn_text(tokenizer: Tokenizer) -> str:
    """What the chat template writes after an assistant message (e.g. '<end_of_turn>\\n')."""
    marker = "\u2063POLINGO\u2063"
    convo = messages("x") + [{"role": "assistant", "content": marker}]
    full = tokenizer.apply_chat_template(convo, tokenize=False, **_TEMPLATE_KWARGS)
    return full[full.rindex(marker) + len(marker) :]


def encode_prompt(tokenizer: Tokenizer, source: str, msgctxt: str | None = None) -> list[int]:
    """Token ids of the prompt; the chat template already wrote any BOS token."""
    return list(
        tokenizer(prompt_text(tokenizer, source, msgctxt), add_special_tokens=False)["input_ids"]
    )


def encode_example(
    tokenizer: Tokenizer, source: str, target: str, msgctxt: str | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for training: the loss covers the translation and its
    end-of-turn marker, never the prompt (labels -100 there)."""
    prompt = encode_prompt(tokenizer, source, msgctxt)
    completion = list(
        tokenizer(target + end_of_turn_text(tokenizer), add_special_tokens=False)["input_ids"]
    )
    return prompt + completion, [-100] * len(prompt) + completion


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


def prepare_source(contract: PromptContract, source: str) -> tuple[str, list[str]]:
    """Apply the contract to a source text at inference time."""
    if not contract.protect_markup:
        return source, []
    protected, _, items = protect(source)
    return protected, items


def prepare_pair(contract: PromptContract, source: str, target: str) -> tuple[str, str]:
    """Apply the contract to a training pair."""
    if not contract.protect_markup:
        return source, target
    protected_source, protected_target, _ = protect(source, target)
    assert protected_target is not None
    return protected_source, protected_target


def _markup_damage(contract: PromptContract, prepared_source: str, output: str) -> tuple[int, int]:
    """(items of the source that ``output`` lacks, items it has in excess): placeholders
    under protect_markup, markup items otherwise."""
    find = _PLACEHOLDER_RE.findall if contract.protect_markup else markup_items
    lost, added = missing_and_added(find(prepared_source), find(output))
    return len(lost), len(added)


def keeps_markup(contract: PromptContract, prepared_source: str, raw_output: str) -> bool:
    """Whether raw model output carries the markup of its (prepared) source: each
    placeholder exactly as often, or, without placeholders, every markup item."""
    lost, added = _markup_damage(contract, prepared_source, raw_output)
    return lost == 0 and (added == 0 or not contract.protect_markup)


def best_for_markup(contract: PromptContract, prepared_source: str, candidates: list[str]) -> str:
    """The first candidate that keeps the markup, else the one that loses the fewest
    items (then adds the fewest); pass the greedy translation first so ties keep it."""
    # min keeps the first of equals
    return min(candidates, key=lambda output: _markup_damage(contract, prepared_source, output))


def finish_output(contract: PromptContract, output: str, items: list[str]) -> str:
    """Turn raw model output back into catalog text."""
    output = output.strip()
    return restore(output, items) if contract.protect_markup else output
