"""What crosses the review page's HTTP boundary (msgspec Structs, one per direction)."""

from __future__ import annotations

from typing import Literal

import msgspec

# restore: an updated entry's previous translation becomes the final one
Action = Literal["accept", "edit", "reject", "skip", "restore"]


class DecisionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/files/{fid}/entries/{eid}: what the translator decided about the entry
    at version ``rev``; ``texts`` (one per plural form) only with ``edit``; ``restore``
    only for an entry translate-po updated (its previous translation)."""

    action: Action
    rev: str = msgspec.field()
    texts: list[str] | msgspec.UnsetType = msgspec.UNSET


class Progress(msgspec.Struct, frozen=True):
    done: int  # reviewed (accepted, edited or rejected, here or elsewhere)
    total: int  # every entry that needed review since the server started
    skipped: int = 0


class FileSummary(msgspec.Struct, frozen=True, kw_only=True):
    fid: int
    path: str
    progress: Progress
    error: str | None = None


class DecisionResponse(msgspec.Struct, frozen=True, kw_only=True):
    eid: str
    decision: str  # accepted | edited | rejected | skipped
    texts: list[str]  # the entry's translation now (one per plural form)
    rev: str  # the entry's new version
    file: Progress
    overall: Progress
    next_file: int | None  # the next file with entries left to review, if any
