"""One translation path: what `polingo eval` scores is what the service answers.

The same held-out entries go through the running service over HTTP and through
evaluation's own call (training.evaluate.evaluate_versions), on the tiny model with a
LoRA adapter and the markup retry on; the answers must be identical, text for text.
Both use the transformers engine (fast here): the test is about the path (memory,
prompt, token budget, decoding, markup retry, finishing), which the engines share.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from test_service_helpers import add_version, running_service

from core.registry import Registry
from training.data import Pair

pytestmark = pytest.mark.slow

# Real entries of the 2024-10-19 snapshot (library/functions.po, tutorial/), with
# markup, one answered by the adapter's memory (below) and one with a msgctxt.
ENTRIES = [
    Pair("Built-in Functions", "內建函式"),
    Pair("Return the absolute value of a number.", "回傳一個數的絕對值。"),
    Pair("See also :func:`repr` and ``__str__``.", "另請參閱 :func:`repr` 和 ``__str__``。"),
    Pair("Open", "開啟", msgctxt="menu"),
    Pair(
        "If *x* is not a Python :class:`int` object, it has to define an "
        ":meth:`~object.__index__` method that returns an integer.",
        "如果 *x* 不是 Python 的 :class:`int` 物件，那它需要定義 "
        ":meth:`~object.__index__` method 並回傳一個整數。",
    ),
]
MEMORY = [{"msgid": "Built-in Functions", "msgctxt": None, "msgstr": "內建函式"}]


def test_eval_scores_exactly_what_the_service_answers(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    from training.evaluate import evaluate_versions

    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir), memory=MEMORY)
    # one batch, in the order evaluation sorts it (by length), so both runs batch alike
    entries = sorted(ENTRIES, key=lambda p: len(p.msgid))
    env = {
        **os.environ,
        "POLINGO_REGISTRY": str(registry.root),
        "POLINGO_ADAPTER": "zh",
        "POLINGO_ENGINE": "transformers",
    }
    with running_service(env, tmp_path / "server.log") as url:
        body = {"items": [{"text": p.msgid, "msgctxt": p.msgctxt} for p in entries]}
        answer = httpx.post(url + "/translate", json=body, timeout=600)
    assert answer.status_code == 200, answer.text
    served = answer.json()["translations"]

    (evaluation,) = evaluate_versions(registry, ["zh@v1"], entries, engine="transformers")
    scored = evaluation.outcomes
    assert [o.text for o in scored] == [t["text"] for t in served]
    assert [o.from_memory for o in scored] == [t["from_memory"] for t in served]
    assert [o.warnings for o in scored] == [t["warnings"] for t in served]
    by_source = {p.msgid: o for p, o in zip(entries, scored, strict=True)}
    assert by_source["Built-in Functions"].from_memory
    assert by_source["Built-in Functions"].text == "內建函式"
    # the random adapter loses markup: the retry ran, in both, and evaluation counted it
    assert evaluation.metrics["markup_retried"] >= 1
    assert evaluation.metrics["from_memory"] == 1
    # and what a translator would have to fix (issue 17's names, as the manifest has them)
    names = {"chrf_prose", "labels_translated", "simplified_outputs", "sphinx_lint_outputs"}
    assert names | {"sphinx_lint_references"} <= evaluation.metrics.keys()
