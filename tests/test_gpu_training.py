"""GPU-only training paths (skipped without CUDA; run on the device with
`python3 -m pytest tests/test_gpu_training.py`): the trainer must train on the model's
own loss, CUDA-graph replay on what eager blocks compute, and the in-place SwiGLU
backward on what Unsloth's traced one computes."""

from __future__ import annotations

import os
import random
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


def _loss_curve(workdir: Path, model_dir: Path, *flags: str) -> list[float]:
    """The per-step loss of a 24-step `polingo train` run in its own process (Unsloth's
    switches are read once a process)."""
    import json
    import subprocess
    import sys

    from conftest import CORPUS

    registry = workdir / "registry"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", "--data", str(CORPUS / "tutorial"),
         "--base-model", str(model_dir), "--registry", str(registry), "--adapter", "t",
         "--max-steps", "24", "--batch-tokens", "2048", "--learning-rate", "1e-2",
         "--logging-steps", "1", "--save-steps", "1000", *flags],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = next(registry.glob("t/v1/report/loss.json"))
    return [loss for _, loss in json.loads(report.read_text())]


def test_trainer_trains_on_the_models_own_loss(tmp_path: Path) -> None:
    """On CUDA the trainer takes the model's loss (Unsloth's fused cross-entropy), not
    TRL's, which re-runs the LM head for entropy and accuracy logs every step."""
    import unsloth  # noqa: F401

    from testkit import build_tiny_model
    from training.config import TrainConfig
    from training.train import build_trainer, load_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    config = TrainConfig(data=tmp_path, load_in_4bit=False, max_length=64, batch_tokens=512)
    model, tok = load_model(model_dir, config)
    trainer, _ = build_trainer(model, tok, _random_examples(), config, tmp_path / "run")
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        own = float(model(**batch).loss)
        trained_on = float(trainer.compute_loss(model, dict(batch)))
    assert abs(trained_on - own) < 1e-3 * own
    assert "entropy" not in trainer._metrics["train"]  # TRL's loss would have logged it


def _packed_trainer(tmp_path: Path) -> tuple:
    """A tiny model loaded for --packing, its trainer, the examples and the first
    packed batch on CUDA."""
    import unsloth  # noqa: F401

    from testkit import build_tiny_model
    from training.config import Experimental, TrainConfig
    from training.train import build_trainer, load_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    config = TrainConfig(
        data=tmp_path, load_in_4bit=False, max_length=512, batch_tokens=512,
        experimental=Experimental(packing=True),
    )  # fmt: skip
    model, tok = load_model(model_dir, config)
    examples = _random_examples()
    trainer, _ = build_trainer(model, tok, examples, config, tmp_path / "run")
    batch = {k: v.cuda() for k, v in next(iter(trainer.get_train_dataloader())).items()}
    return model, trainer, examples, batch


def test_packed_batches_keep_pairs_apart_on_cuda(tmp_path: Path) -> None:
    """Unsloth's CUDA attention must keep each packed pair to itself (one row, position
    ids restarting at each pair), as transformers' does on the CPU
    (tests/test_training.py::test_packed_batches_train_each_pair_as_if_alone)."""
    import unsloth  # noqa: F401
    from conftest import packed_logit_gaps

    model, trainer, examples, batch = _packed_trainer(tmp_path)
    rows = trainer.token_sampler.rows_of(next(iter(trainer.token_sampler)))
    assert max(len(row) for row in rows) > 1  # pairs share a row
    packed, crossed = packed_logit_gaps(model, batch, rows, examples)
    with torch.no_grad():  # and the trainer's own loss call keeps them apart too
        loss = trainer.compute_loss(model, dict(batch)).item()
        total = tokens = 0.0
        for index in (i for row in rows for i in row):
            ids, labels = (
                torch.tensor([examples[index][k]]).cuda() for k in ("input_ids", "labels")
            )
            counted = int((labels[0, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * counted
            tokens += counted
    alone = total / tokens
    print(
        f"logit gaps packed {packed:.4g} crossed {crossed:.4g}; loss {loss:.6g} alone {alone:.6g}"
    )
    assert packed < 0.1 * crossed, (packed, crossed)  # bf16: not exact, far from crossed
    assert loss == pytest.approx(alone, rel=1e-2), (loss, alone)


def test_flash_varlen_packing_matches_unsloths_segments_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On torch 2.11, --packing sends each layer's attention through one flash varlen
    call (training/unsloth_kernels.py) instead of Unsloth's one SDPA call per run of
    equal lengths; on the same packed batch the loss and the LoRA gradients must be
    those of Unsloth's own path (the tiny model has grouped K/V heads, 4 over 2)."""
    import inspect

    import unsloth  # noqa: F401
    from torch.nn.attention import varlen
    from unsloth.utils import attention_dispatch as dispatch

    if "enable_gqa" in inspect.signature(varlen.varlen_attn).parameters:
        pytest.skip("this torch has varlen with GQA: Unsloth's own path, nothing to patch")
    model, trainer, _, batch = _packed_trainer(tmp_path)
    assert dispatch._TORCH_VARLEN_ATTN is not None  # patched by load_model
    calls: list[int] = []
    lean = dispatch._LeanFlashVarlen

    class Counting:  # the flash varlen path, counted
        @staticmethod
        def apply(*args):  # noqa: ANN002, ANN205
            calls.append(1)
            return lean.apply(*args)

    monkeypatch.setattr(dispatch, "_LeanFlashVarlen", Counting)
    model.train()

    def loss_and_grads() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        named = model.named_parameters()
        return loss.item(), {n: p.grad.float().clone() for n, p in named if p.grad is not None}

    varlen_loss, varlen_grads = loss_and_grads()
    assert calls, "the packed batch did not reach the flash varlen call"
    monkeypatch.setattr(dispatch, "_TORCH_VARLEN_ATTN", None)  # Unsloth's own fallback
    monkeypatch.setattr(dispatch, "_LEAN_VARLEN", False)
    calls.clear()
    segments_loss, segments_grads = loss_and_grads()
    assert not calls
    assert varlen_grads and varlen_grads.keys() == segments_grads.keys()
    worst = max(
        float((varlen_grads[n] - g).norm() / g.norm().clamp_min(1e-12))
        for n, g in segments_grads.items()
    )
    print(f"loss varlen {varlen_loss:.6g} segments {segments_loss:.6g}; worst grad gap {worst:.3g}")
    assert varlen_loss == pytest.approx(segments_loss, rel=1e-3)
    assert worst < 0.05


def test_cuda_graph_training_follows_the_eager_loss_curve(tmp_path: Path) -> None:
    """Replayed graphs reuse their memory pool from step to step; a gradient or an
    output read after the pool was overwritten would send the loss elsewhere."""
    from testkit import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    eager = _loss_curve(tmp_path / "eager", model_dir, "--no-cuda-graphs", "--fixed-shapes", "4")
    graphed = _loss_curve(tmp_path / "graphs", model_dir, "--cuda-graphs", "--fixed-shapes", "4")
    learned = eager[0] - min(eager[-3:])
    assert learned > 0.3, eager  # it learns, so a wrong or stale gradient would show
    assert len(graphed) == len(eager)
    for a, b in zip(eager, graphed, strict=True):
        assert abs(a - b) < 0.1 * learned, (eager, graphed)


def test_inplace_swiglu_backward_computes_unsloths_formula() -> None:
    """Inside torch.compile the custom op must run the in-place kernel and give what
    Unsloth's traced backward computes: h = silu(e) * g, df = dw * silu(e) and
    de = dw * g * silu'(e)."""
    import unsloth  # noqa: F401
    from unsloth.kernels import fast_lora

    from training.unsloth_kernels import use_inplace_swiglu_backward

    assert use_inplace_swiglu_backward()
    backward = fast_lora.swiglu_DWf_DW_dfg_kernel
    gen = torch.Generator("cuda").manual_seed(0)
    dw, e, g = (
        torch.randn(300, 512, device="cuda", generator=gen, dtype=torch.bfloat16) * 3
        for _ in range(3)
    )
    se = torch.sigmoid(e.float())
    f = (se * e.float()).to(torch.bfloat16)
    expected = (
        f * g,
        dw * f,
        ((dw * g).float() * se * (1.0 + e.float() * (1.0 - se))).to(torch.bfloat16),
    )

    eager_inputs = [t.clone() for t in (dw, e, g)]
    eager = backward(*eager_inputs)
    assert all(o.data_ptr() == i.data_ptr() for o, i in zip(eager, eager_inputs, strict=True))
    compiled = torch.compile(lambda a, b, c: backward(a * 1, b * 1, c * 1), fullgraph=True)
    for got in (eager, compiled(dw, e, g)):
        for name, a, b in zip(("h", "df", "de"), got, expected, strict=True):
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.02, msg=name)


def test_inplace_swiglu_backward_gives_the_traced_gradients(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The same QLoRA batch's LoRA gradients with Unsloth's traced SwiGLU backward and
    with the in-place custom op, which must really run inside the compiled blocks."""
    import unsloth  # noqa: F401
    from unsloth.kernels import fast_lora, swiglu

    from testkit import build_tiny_model
    from training.config import Experimental, TrainConfig
    from training.train import build_trainer, load_model
    from training.unsloth_kernels import use_inplace_swiglu_backward

    model_dir = build_tiny_model(tmp_path / "model", tokenizer_from=_tokenizer())
    config = TrainConfig(
        data=tmp_path,
        max_length=64,
        batch_tokens=512,
        experimental=Experimental(inplace_swiglu=False),
    )
    model, tok = load_model(model_dir, config)  # nf4 on CUDA, as in production
    trainer, _ = build_trainer(model, tok, _random_examples(), config, tmp_path / "run")
    batch = next(iter(trainer.get_train_dataloader()))
    batch = {k: v.cuda() for k, v in batch.items()}

    def gradients() -> tuple[dict[str, torch.Tensor], set[str]]:
        model.zero_grad(set_to_none=True)
        torch._dynamo.reset()  # recompile the blocks with the current kernel
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(**batch).loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        return grads, {event.name for event in prof.events()}

    monkeypatch.setattr(fast_lora, "swiglu_DWf_DW_dfg_kernel", swiglu.swiglu_DWf_DW_dfg_kernel)
    traced, traced_ops = gradients()
    assert use_inplace_swiglu_backward()
    inplace, inplace_ops = gradients()

    assert "polingo::swiglu_backward_" in inplace_ops - traced_ops
    assert traced.keys() == inplace.keys() and any("gate_proj" in n for n in traced)
    for name, want in traced.items():
        error = (inplace[name] - want).norm() / want.norm().clamp_min(1e-12)
        assert error < 0.02, (name, float(error))
