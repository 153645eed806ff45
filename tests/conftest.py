"""Shared test fixtures: a tiny random model, a LoRA adapter on it, real catalogs,
and a session-wide model cache (so a packaged alias is converted once per run)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# A trimmed, byte-identical copy of two python-docs-zh-tw snapshots (tests/data/.../README.md):
# the suite needs nothing outside the repository.
SNAPSHOTS = Path(__file__).resolve().parent / "data" / "python-docs-zh-tw"
CORPUS = SNAPSHOTS / "2024-10-19"
# Small real catalogs (a few dozen entries each) and one big one.
SAMPLE_CATALOGS = ("tutorial/appetite.po", "tutorial/interactive.po", "library/functions.po")

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# The external checkers (powrap, sphinx-lint) live beside the interpreter in the venv,
# which need not be on PATH (`.venv/bin/python -m pytest`, CI).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@pytest.fixture(scope="session", autouse=True)
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where packaged aliases are converted: an existing ``$POLINGO_CACHE`` (reused
    across runs, so a developer converts once), else a folder under pytest's
    basetemp, which POLINGO_CACHE then names for the session (autouse: every test and
    the commands it starts share one conversion, and none writes to ~/.cache)."""
    previous = os.environ.get("POLINGO_CACHE")
    root = Path(previous) if previous else tmp_path_factory.mktemp("polingo-cache")
    os.environ["POLINGO_CACHE"] = str(root)
    yield root / "models"
    if previous is None:
        os.environ.pop("POLINGO_CACHE", None)
    else:
        os.environ["POLINGO_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and ChatML template."""
    from testkit import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A PEFT LoRA adapter (r=8, all 7 projections) on the tiny model, with random
    non-zero B matrices so that it changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: the adapter would be a no-op
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    out = tmp_path_factory.mktemp("tiny-adapter")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture
def sample_po_dir(tmp_path: Path) -> Path:
    """Fresh copies (per test, so tests may write to them) of a few real catalogs of
    the 2024-10-19 snapshot, under their corpus paths."""
    out = tmp_path / "po"
    for rel in SAMPLE_CATALOGS:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / rel, target)
    return out


def packed_logit_gaps(model, batch: dict, rows: list[list[int]], examples: list[dict]):  # noqa: ANN001, ANN201
    """(packed, crossed): the largest logit difference over every pair of a packed batch
    between the packed row and the pair run alone; "crossed" runs the same rows with
    position ids that do not restart, so that attention reaches across pairs (what a
    broken packing does): the scale that ``packed`` must stay far below."""
    import torch

    ids = batch["input_ids"]
    crossed_positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    with torch.no_grad():
        packed_logits = model(input_ids=ids, position_ids=batch["position_ids"]).logits
        crossed_logits = model(input_ids=ids, position_ids=crossed_positions).logits
        packed = crossed = 0.0
        for r, row in enumerate(rows):
            at = 0
            for index in row:
                alone_ids = torch.tensor([examples[index]["input_ids"]], device=ids.device)
                alone = model(input_ids=alone_ids).logits[0].float()
                n = alone.shape[0]
                packed = max(packed, float((packed_logits[r, at : at + n] - alone).abs().max()))
                crossed = max(crossed, float((crossed_logits[r, at : at + n] - alone).abs().max()))
                at += n
    return packed, crossed
