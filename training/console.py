"""Progress and warnings of the training commands, on stderr (stdout carries results)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
