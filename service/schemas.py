"""msgspec Structs at the HTTP boundary of the translation service.

The client (clients/) encodes requests and decodes answers with these same types.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.errors import ErrorBody, ErrorResponse  # noqa: F401 (the one error envelope)
from core.settings import MAX_BATCH, MAX_TEXT_CHARS

MAX_MSGCTXT_CHARS = 500  # gettext contexts are labels ("menu", "file dialog")

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Context = Annotated[str, msgspec.Meta(max_length=MAX_MSGCTXT_CHARS)]


class TranslateItem(msgspec.Struct, forbid_unknown_fields=True):
    text: Text
    msgctxt: Context | None = None
    # Update mode (both or neither): the entry's source before it changed and its
    # translation of that; the answer edits the translation to the new ``text``.
    previous_text: Text | None = None
    previous_translation: Text | None = None

    def __post_init__(self) -> None:
        if (self.previous_text is None) != (self.previous_translation is None):
            raise ValueError(
                "previous_text and previous_translation go together: give both or neither"
            )


class TranslateRequest(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[TranslateItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    # "NAME" or "NAME@VERSION"; the service's default adapter (current version) when absent
    adapter: str | None = None


class Translation(msgspec.Struct):
    text: str
    adapter: str  # "NAME@VERSION" that produced it (or whose memory answered)
    from_memory: bool
    warnings: list[str] = []
    # how far the draft can be trusted, in [0, 1] (core.confidence): the model's token
    # probabilities and, with several candidates, their agreement; 1 for memory answers
    confidence: float | None = None


class TranslateResponse(msgspec.Struct):
    translations: list[Translation]


class AdapterInfo(msgspec.Struct):
    name: str
    version: str
    current: bool
    loaded: bool
    base_model: str
    metrics: dict[str, float]
    created_at: str


class AdapterList(msgspec.Struct):
    adapters: list[AdapterInfo]


class ReloadResponse(msgspec.Struct):
    loaded: list[str]  # "NAME@VERSION" now served
    errors: dict[str, str] = {}


class Health(msgspec.Struct):
    status: str  # "ok" | "starting" | "failed"
    engine: str  # "vllm" | "transformers (fallback)"
    base_model: str
    adapters: list[str]
