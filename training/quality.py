"""Quality metrics of issue 17, beside evaluate.score()'s: what a translator would
have to fix in the drafts.

- chrf_prose: chrF over the pairs whose reference differs from the source (prose,
  not code that is copied as is).
- labels_translated: share of the titled roles/links (:ref:`label <target>`,
  `label <url>`_) whose label the output translated, among those the reference
  translated.
- simplified_outputs: outputs with simplified characters.
- sphinx_lint_outputs / sphinx_lint_references: sphinx-lint findings when the texts
  are written into one catalog as translated entries (one sphinx-lint run each).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import polib
from sacrebleu.metrics import CHRF

from core.chinese import simplified_usage
from core.markup import prose, titled_labels


def chrf_prose(sources: list[str], references: list[str], outputs: list[str]) -> float:
    keep = [i for i, (s, r) in enumerate(zip(sources, references, strict=True)) if r != s]
    if not keep:
        return 0.0
    chrf = CHRF().corpus_score([outputs[i] for i in keep], [[references[i] for i in keep]])
    return round(chrf.score, 2)


def label_counts(sources: list[str], references: list[str], outputs: list[str]) -> tuple[int, int]:
    """(labels the output translated, labels the reference translated)."""
    done = total = 0
    for source, reference, output in zip(sources, references, outputs, strict=True):
        ref_labels = dict(titled_labels(reference))
        out_labels: dict[str, list[str]] = {}
        for key, label in titled_labels(output):
            out_labels.setdefault(key, []).append(label)
        for key, label in titled_labels(source):
            if key not in ref_labels or ref_labels[key] == label:
                continue
            total += 1
            done += any(other != label for other in out_labels.get(key, []))
    return done, total


def simplified_outputs(outputs: list[str]) -> int:
    return sum(bool(simplified_usage(prose(o))) for o in outputs)


def _sphinx_lint() -> list[str]:
    """sphinx-lint as a module of this interpreter: found wherever pip put the package
    (a venv, or --target folders on PYTHONPATH, as on the GPU machine)."""
    if importlib.util.find_spec("sphinxlint") is None:
        raise RuntimeError("sphinx-lint is not installed (pip install sphinx-lint)")
    return [sys.executable, "-m", "sphinxlint"]


def sphinx_lint_findings(sources: list[str], texts: list[str]) -> list[str]:
    """sphinx-lint's findings for the texts written as msgstr of their sources."""
    catalog = polib.POFile()
    catalog.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    seen: set[str] = set()
    for source, text in zip(sources, texts, strict=True):
        if source in seen or not text:
            continue  # a catalog holds each msgid once
        seen.add(source)
        catalog.append(polib.POEntry(msgid=source, msgstr=text))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drafts.po"
        catalog.save(str(path))
        run = subprocess.run(
            [*_sphinx_lint(), str(path)], capture_output=True, text=True, check=False
        )
    if run.returncode not in (0, 1):
        raise RuntimeError(f"sphinx-lint failed: {run.stderr.strip()}")
    # findings go to stderr, one "PATH:LINE: message (check)" a line
    prefix = f"{path}:"
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(prefix)]


def quality(sources: list[str], references: list[str], outputs: list[str]) -> dict[str, float]:
    """The five metrics, named as in the manifest's ``metrics``."""
    done, total = label_counts(sources, references, outputs)
    return {
        "chrf_prose": chrf_prose(sources, references, outputs),
        "labels_translated": round(done / total, 4) if total else 1.0,
        "labels_translatable": float(total),
        "simplified_outputs": float(simplified_outputs(outputs)),
        "sphinx_lint_outputs": float(len(sphinx_lint_findings(sources, outputs))),
        "sphinx_lint_references": float(len(sphinx_lint_findings(sources, references))),
    }
