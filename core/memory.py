"""Translation memory: the human translations an adapter was trained on.

A text that the corpus already translates is answered with that translation, exactly,
without the model. Training writes ``memory.jsonl`` into the registry version folder,
one ``{"msgid": ..., "msgctxt": ... | null, "msgstr": ...}`` a line.
"""

from __future__ import annotations

import json
from pathlib import Path


class TranslationMemory:
    def __init__(self) -> None:
        self._exact: dict[tuple[str | None, str], str] = {}
        self._pairs: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, msgid: str, msgstr: str, msgctxt: str | None = None) -> None:
        if not msgid or not msgstr:
            return
        if (msgctxt, msgid) not in self._exact:
            self._pairs.append((msgid, msgstr))
        self._exact.setdefault((msgctxt, msgid), msgstr)

    def pairs(self) -> list[tuple[str, str]]:
        """(msgid, msgstr) of every entry, in the order they were added."""
        return list(self._pairs)

    def without(self, msgids: set[str]) -> TranslationMemory:
        """A copy lacking every entry whose msgid is in ``msgids`` (held-out texts)."""
        out = TranslationMemory()
        for (msgctxt, msgid), msgstr in self._exact.items():
            if msgid not in msgids:
                out.add(msgid, msgstr, msgctxt)
        return out

    def lookup(self, msgid: str, msgctxt: str | None = None) -> str | None:
        """The human translation of this msgid in this very msgctxt (None: no context).
        Never one made for another context: a memory answer is written without the fuzzy
        flag, as reviewed, which only the same msgid and msgctxt justify."""
        return self._exact.get((msgctxt, msgid))

    @classmethod
    def load(cls, path: Path) -> TranslationMemory:
        """Read a memory.jsonl; a missing file is an empty memory. Bad lines raise
        ValueError naming the file and line."""
        memory = cls()
        if not path.is_file():
            return memory
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    msgid, msgstr = entry["msgid"], entry["msgstr"]
                    msgctxt = entry.get("msgctxt")
                    if not isinstance(msgid, str) or not isinstance(msgstr, str):
                        raise TypeError("msgid and msgstr must be strings")
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ValueError(f"{path}:{number}: bad memory entry ({exc})") from None
                memory.add(msgid, msgstr, msgctxt if isinstance(msgctxt, str) else None)
        return memory
