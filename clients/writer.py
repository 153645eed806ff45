"""The one way polingo writes a catalog it changed (translate-po and the review page).

``write_catalog``: the catalog rendered as ``powrap`` would write it (msgcat), every
finding of ``msgfmt --check`` and sphinx-lint in the changed entries dealt with first,
then the file replaced atomically unless it changed on disk since it was read. The
caller holds the catalog's ``CatalogLock`` (``FILE.po.lock``).
"""

from __future__ import annotations

from clients.filesafe import atomic_replace
from clients.filling import Catalog, CatalogError, Unit


class InvalidCatalogText(CatalogError):
    """A change that msgfmt --check or sphinx-lint rejects (``on_invalid="refuse"``);
    nothing was written. ``findings`` holds their messages."""

    def __init__(self, message: str, findings: list[str]) -> None:
        super().__init__(message)
        self.findings = findings


def write_catalog(catalog: Catalog, units: list[Unit], *, on_invalid: str) -> str:
    """Write the units' changes (status "filled" or "flagged") into ``catalog.path``.

    ``on_invalid``: an entry that msgfmt or sphinx-lint complains about is kept as fuzzy
    with a note ("fuzzy"), put back as it was ("skip"), or the whole write is refused
    with ``InvalidCatalogText`` ("refuse": a person's decision is never altered).
    ``ChangedOnDiskError`` if the file is no longer what was read; ``catalog.fingerprint``
    becomes the new file's. The file keeps its line endings (CRLF or LF). Returns the
    text written, with "\n" line endings."""
    if on_invalid == "refuse":
        text = catalog.render()
        found, stray = catalog.problems(text, units)
        findings = [m for messages in found.values() for m in messages] + stray
        if findings:
            unique = list(dict.fromkeys(findings))
            raise InvalidCatalogText(f"{catalog.path}: {'; '.join(unique)[:500]}", unique)
    else:
        text = catalog.render_checked(units, on_invalid=on_invalid)
    data = text.replace("\n", catalog.newline).encode()
    catalog.fingerprint = atomic_replace(catalog.path, data, catalog.fingerprint)
    return text
