"""GPU-only training paths (skipped without CUDA; run on the device with
`python3 -m pytest tests/test_gpu_training.py`): Unsloth's padding-free batches must
train on exactly what padded batches train on, the trainer on the model's own loss, and
CUDA-graph replay on what eager blocks compute."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _random_examples(count: int = 12) -> list[dict[str, list[int]]]:
    rng = random.Random(0)
    examples = []
    for _ in range(count):  # prompt (no loss) + completion, lengths 10 to 60
        prompt = [rng.randrange(100, 5000) for _ in range(rng.randrange(5, 30))]
        completion = [rng.randrange(100, 5000) for _ in range(rng.randrange(5, 30))]
        examples.append(
            {"input_ids": prompt + completion, "labels": [-100] * len(prompt) + completion}
        )
    return examples


def _tokenizer() -> str:
    # A folder with tokenizer files where the GGUF packages are missing (the GPU box).
    return os.environ.get("POLINGO_TEST_TOKENIZER", "smollm2-135m")


def test_padding_free_batch_has_the_padded_batch_loss(tmp_path: Path) -> None:
    import unsloth  # noqa: F401  (before transformers, as polingo train does)

    from service.base_models import build_tiny_model
    from training.train import TrainConfig, build_trainer, load_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    examples = _random_examples()
    config = TrainConfig(
        data=tmp_path,
        backend="unsloth",
        load_in_4bit=False,
        max_length=64,
        batch_tokens=512,
        pad_multiple=16,
    )
    model, tok = load_model(model_dir, config)
    with torch.no_grad():  # louder attention, so that a leak between examples shows in the loss
        for name, param in model.named_parameters():
            if name.endswith(("v_proj.base_layer.weight", "o_proj.base_layer.weight")):
                param.mul_(30)

    losses, shapes = {}, {}
    for padding_free in (False, True):
        trainer, _ = build_trainer(
            model,
            tok,
            examples,
            replace(config, padding_free=padding_free),
            tmp_path / f"run-{padding_free}",
        )
        batch = next(iter(trainer.get_train_dataloader()))
        shapes[padding_free] = tuple(batch["input_ids"].shape)
        if not padding_free:
            real_tokens = int(batch["attention_mask"].sum())
        with torch.no_grad():
            losses[padding_free] = float(model(**batch).loss)
    # The control: the same flat row as one sequence, every example attending to those before it.
    leaky = {k: batch[k] for k in ("input_ids", "labels")}
    leaky["position_ids"] = torch.arange(batch["input_ids"].shape[1])[None]
    with torch.no_grad():
        leaky_loss = float(model(**leaky).loss)

    assert shapes[True] == (1, real_tokens)  # the same examples in one row, no pad token
    assert shapes[False][1] % 16 == 0  # padded rows are rounded up to pad_multiple
    gap = abs(losses[True] - losses[False])
    assert gap < 0.01 * losses[False], (losses, leaky_loss)
    assert abs(leaky_loss - losses[False]) > 5 * gap, (losses, leaky_loss)


def test_trainer_trains_on_the_models_own_loss(tmp_path: Path) -> None:
    """On CUDA the trainer takes the model's loss (Unsloth's fused cross-entropy), not
    TRL's, which re-runs the LM head for entropy and accuracy logs every step."""
    import unsloth  # noqa: F401

    from service.base_models import build_tiny_model
    from training.train import TrainConfig, build_trainer, load_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    config = TrainConfig(
        data=tmp_path, backend="unsloth", load_in_4bit=False, max_length=64, batch_tokens=512
    )
    model, tok = load_model(model_dir, config)
    trainer, _ = build_trainer(model, tok, _random_examples(), config, tmp_path / "run")
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        own = float(model(**batch).loss)
        trained_on = float(trainer.compute_loss(model, dict(batch)))
    assert abs(trained_on - own) < 1e-3 * own
    assert "entropy" not in trainer._metrics["train"]  # TRL's loss would have logged it


def test_cuda_graph_training_follows_the_eager_loss_curve(tmp_path: Path) -> None:
    """Replayed graphs reuse their memory pool from step to step; a gradient or an
    output read after the pool was overwritten would send the loss elsewhere."""
    import json
    import subprocess
    import sys

    from conftest import CORPUS

    from service.base_models import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    curves = {}
    for graphs in (False, True):
        registry = tmp_path / f"reg-{graphs}"
        done = subprocess.run(
            [sys.executable, "-m", "training.cli", "train", "--data", str(CORPUS / "tutorial"),
             "--base-model", str(model_dir), "--registry", str(registry), "--adapter", "t",
             "--max-steps", "24", "--batch-tokens", "2048", "--fixed-shapes", "4",
             "--learning-rate", "1e-2", "--logging-steps", "1", "--save-steps", "1000",
             "--cuda-graphs" if graphs else "--no-cuda-graphs"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        curves[graphs] = [loss for _, loss in json.loads(
            next(registry.glob("t/v1/report/loss.json")).read_text())]  # fmt: skip
    eager, graphed = curves[False], curves[True]
    learned = eager[0] - min(eager[-3:])
    assert learned > 0.3, eager  # it learns, so a wrong or stale gradient would show
    assert len(graphed) == len(eager)
    for a, b in zip(eager, graphed, strict=True):
        assert abs(a - b) < 0.1 * learned, (eager, graphed)
