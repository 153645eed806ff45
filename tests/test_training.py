"""Training side: pairs from catalogs, the stable split, bad catalogs, token-budget
batches, the prompt contract, and (slow) the real `polingo train`/`eval` commands on
the tiny model, resumed after a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORPUS, packed_logit_gaps

from core.prompt import PromptBuilder, PromptContract, end_of_turn_text, protect, restore
from core.registry import Registry
from training.batching import PackedBatchSampler, TokenBudgetBatchSampler, bucket_lengths
from training.data import (
    CatalogError,
    data_index,
    diff_index,
    is_heldout,
    load_corpus,
)

HEADER = (
    'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
    '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
)


def write_po(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def polingo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 900),
        **kwargs,
    )


def tutorial_docs(tmp_path: Path, corpus: Path = CORPUS) -> Path:
    """A .po tree of the corpus's tutorial/ folder, to train on."""
    docs = tmp_path / "docs"
    shutil.copytree(corpus / "tutorial", docs / "tutorial")
    return docs


def train_args(docs: Path, base: Path | str, registry: Path, *options: str) -> list[str]:
    """`polingo train` of ``docs`` on ``base`` into ``registry``, as adapter zh."""
    return [
        "train", "--data", str(docs), "--base-model", str(base), "--adapter", "zh",
        "--registry", str(registry), *options,
    ]  # fmt: skip


# ---- pairs --------------------------------------------------------------------------


def test_pairs_follow_the_rules(tmp_path: Path) -> None:
    write_po(
        tmp_path / "a.po",
        'msgid "Hello"\nmsgstr "你好"\n\n'
        '#, fuzzy\nmsgid "Draft"\nmsgstr "草稿"\n\n'
        'msgid "Empty"\nmsgstr ""\n\n'
        'msgctxt "menu"\nmsgid "File"\nmsgstr "檔案"\n\n'
        'msgid "File"\nmsgstr "文件"\n\n'
        'msgid "one file"\nmsgid_plural "%d files"\nmsgstr[0] "一個檔案"\nmsgstr[1] "%d 個檔案"\n\n'
        f'msgid "{"long " * 500}"\nmsgstr "長"\n\n'
        '#~ msgid "Old"\n#~ msgstr "舊"\n',
    )
    write_po(tmp_path / "b.po", 'msgid "Hello"\nmsgstr "哈囉"\n')
    write_po(tmp_path / "sub" / "c.po", 'msgid "Hello"\nmsgstr "你好"\n')

    corpus = load_corpus(tmp_path)
    pairs = {(p.msgctxt, p.msgid): p.msgstr for p in corpus.pairs}

    assert pairs == {
        (None, "Hello"): "你好",  # two catalogs against one: the most frequent wins
        ("menu", "File"): "檔案",
        (None, "File"): "文件",
        (None, "one file"): "一個檔案",
        (None, "%d files"): "%d 個檔案",
    }
    assert corpus.files == 3
    assert corpus.skipped_fuzzy == 1
    assert corpus.untranslated == 1
    assert corpus.conflicts == 1
    assert corpus.duplicates == 2
    assert corpus.dropped_too_long == 1


def test_one_form_catalog_pairs_msgstr0_with_the_plural_source(tmp_path: Path) -> None:
    # zh_TW declares nplurals=1: msgstr[0] serves every count, so it translates msgid_plural
    path = tmp_path / "zh.po"
    path.write_text(
        HEADER.replace("nplurals=2; plural=(n != 1);", "nplurals=1; plural=0;")
        + 'msgid "one file"\nmsgid_plural "%d files"\nmsgstr[0] "%d 個檔案"\n',
        encoding="utf-8",
    )
    corpus = load_corpus(tmp_path)
    assert [(p.msgid, p.msgstr) for p in corpus.pairs] == [("%d files", "%d 個檔案")]


def test_heldout_split_is_stable_and_disjoint(tmp_path: Path) -> None:
    for rel in ("tutorial", "howto"):
        shutil.copytree(CORPUS / rel, tmp_path / "docs" / rel)
    first = load_corpus(tmp_path / "docs")
    train, heldout = first.split()
    assert heldout and train
    assert not {p.msgid for p in train} & {p.msgid for p in heldout}
    assert 0.01 < len(heldout) / len(first.pairs) < 0.06

    # New docs land: the old held-out pairs stay held out, whatever the file order.
    shutil.copytree(CORPUS / "faq", tmp_path / "docs" / "0-faq-first")
    _, heldout_later = load_corpus(tmp_path / "docs").split()
    assert {p.key for p in heldout} <= {p.key for p in heldout_later}
    assert all(is_heldout(p.msgid) for p in heldout_later)


def test_data_index_tells_new_changed_removed() -> None:
    from training.data import Pair

    old = data_index([Pair("a", "甲"), Pair("b", "乙"), Pair("c", "丙")])
    new = data_index([Pair("a", "甲"), Pair("b", "乙乙"), Pair("d", "丁")])
    assert diff_index(old, new) == {"new_pairs": 1, "changed_pairs": 1, "removed_pairs": 1}


def test_bad_catalogs_are_reported_with_file_and_line(tmp_path: Path) -> None:
    write_po(tmp_path / "good.po", 'msgid "Hello"\nmsgstr "你好"\n')
    write_po(tmp_path / "syntax.po", 'msgid "Hello"\nmsgstr "你好"\n\nmsgid "x"\nmsgstr oops\n')
    (tmp_path / "junk.po").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin.po").write_bytes(
        (HEADER + 'msgid "caf\xe9"\nmsgstr "x"\n').encode("latin-1")
    )

    corpus = load_corpus(tmp_path)
    assert [p.msgid for p in corpus.pairs] == ["Hello"]
    problems = "\n".join(corpus.problems)
    assert f"{tmp_path / 'syntax.po'}:" in problems
    assert f"{tmp_path / 'junk.po'}: not a text catalog" in problems
    assert f"{tmp_path / 'latin.po'}:6:" in problems
    with pytest.raises(CatalogError):
        load_corpus(tmp_path, strict=True)

    done = polingo("data", "stats", str(tmp_path))
    assert done.returncode == 1 and "pairs (deduplicated) 1" in done.stdout
    strict = polingo("data", "stats", "--strict", str(tmp_path))
    assert strict.returncode == 2
    assert "error:" in strict.stderr and "Traceback" not in strict.stderr
    missing = polingo("data", "stats", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr


# ---- batches ----------------------------------------------------------------------------


def test_token_budget_batches_cover_every_example_once_within_budget() -> None:
    lengths = [((i * 37) % 500) + 3 for i in range(3000)]
    sampler = TokenBudgetBatchSampler(lengths, 4096, seed=0, pad_multiple=64)
    seen = sorted(i for batch in sampler for i in batch)
    assert seen == list(range(len(lengths)))
    for batch in sampler:
        padded = -(-max(lengths[i] for i in batch) // 64) * 64
        assert padded * len(batch) <= 4096
    assert sampler.padding_efficiency() > 0.85
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # a resumed run sees the same order
    with pytest.raises(ValueError, match="longest example"):
        TokenBudgetBatchSampler([10, 5000], 4096)


def test_bucket_lengths_waste_the_fewest_cells() -> None:
    import itertools
    import random

    def cells(lengths: list[int], tops: list[int]) -> int:
        return sum(min(t for t in tops if t >= n) for n in lengths)

    rng = random.Random(3)
    for _ in range(30):
        lengths = [rng.randint(3, 40) for _ in range(rng.randint(1, 25))]
        for k in (1, 2, 3):
            tops = bucket_lengths(lengths, k)
            assert len(tops) <= k and tops == sorted(tops) and tops[-1] == max(lengths)
            best = (
                min(
                    cells(lengths, [*combo, max(lengths)])
                    for combo in itertools.combinations(sorted(set(lengths)), k - 1)
                )
                if len(set(lengths)) >= k
                else cells(lengths, sorted(set(lengths)))
            )
            assert cells(lengths, tops) == best


def test_fixed_shape_batches_use_at_most_k_shapes() -> None:
    lengths = [((i * 37) % 500) + 3 for i in range(3000)]
    sampler = TokenBudgetBatchSampler(lengths, 4096, seed=0, fixed_shapes=6)
    assert len(sampler.shapes) == 6
    seen = sorted(i for batch in sampler for i in batch)
    assert seen == list(range(len(lengths)))
    shapes = set()
    for batch in sampler:
        rows, length = sampler.shape_for(max(lengths[i] for i in batch))
        assert len(batch) <= rows and rows * length <= 4096
        assert all(lengths[i] <= length for i in batch)
        shapes.add((rows, length))
    assert len(shapes) == 6
    # every bucket's batches but its last are full: few filler rows
    assert sum(
        rows - len(b)
        for b in sampler
        for rows in [sampler.shape_for(max(lengths[i] for i in b))[0]]
    ) < sum(r for r, _ in shapes)
    assert (
        0.7
        < sampler.padding_efficiency()
        < TokenBudgetBatchSampler(lengths, 4096, seed=0).padding_efficiency()
    )
    assert TokenBudgetBatchSampler(lengths, 4096).shape_for(100) is None


def test_fixed_shape_batches_through_the_trainers_collator(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from training.config import Experimental, TrainConfig
    from training.train import build_trainer, load_model, tokenize_pairs

    corpus = load_corpus(CORPUS / "tutorial")
    config = TrainConfig(
        data=CORPUS,
        batch_tokens=2048,
        max_length=512,
        experimental=Experimental(backend="peft", fixed_shapes=3),
    )
    model, tokenizer = load_model(tiny_model_dir, config)
    examples, _ = tokenize_pairs(tokenizer, corpus.pairs[:150], config)
    trainer, progress = build_trainer(model, tokenizer, examples, config, tmp_path / "run")
    shapes, label_tokens, fillers = set(), 0, 0
    for batch in trainer.get_train_dataloader():
        shapes.add(tuple(batch["input_ids"].shape))
        assert batch["labels"].shape == batch["attention_mask"].shape == batch["input_ids"].shape
        label_tokens += int((batch["labels"] != -100).sum())
        filler = batch["labels"].eq(-100).all(dim=1)
        assert batch["attention_mask"][filler].all()  # no fully masked row
        fillers += int(filler.sum())
    assert 1 < len(shapes) <= 3 and fillers > 0
    assert label_tokens == sum(sum(t != -100 for t in e["labels"]) for e in examples)
    assert progress.tokens_seen == sum(len(e["input_ids"]) for e in examples)


def test_packed_rows_hold_every_example_once_within_the_row() -> None:
    lengths = [(i * 37) % 500 + 3 for i in range(3000)]
    sampler = PackedBatchSampler(lengths, 1024, 8, seed=3, chunk=1000)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen = []
        for batch in sampler:
            rows = sampler.rows_of(batch)
            assert 1 <= len(rows) <= 8 and [i for row in rows for i in row] == batch
            assert all(sum(lengths[i] for i in row) <= 1024 for row in rows)
            seen += batch
        assert sorted(seen) == list(range(len(lengths)))
    first = [list(b) for b in PackedBatchSampler(lengths, 1024, 8, seed=3, chunk=1000)]
    assert first != [list(b) for b in sampler]  # another epoch, another order
    sampler.set_epoch(0)
    assert first == [list(b) for b in sampler]  # the same again on resume
    assert sampler.padding_efficiency() > 0.9  # short pairs fill the rows
    with pytest.raises(ValueError, match="shorter than the longest example"):
        PackedBatchSampler([10, 2000], 1024, 8)


@pytest.mark.parametrize("backend", ["unsloth", "peft"])
def test_packed_batches_train_each_pair_as_if_alone(
    tmp_path: Path, tiny_model_dir: Path, backend: str
) -> None:
    """One shape for every batch, and attention kept inside each pair: the trainer's loss
    on a packed batch is the loss of its pairs run one by one."""
    import torch

    from training.config import Experimental, TrainConfig
    from training.train import build_trainer, load_model, tokenize_pairs

    corpus = load_corpus(CORPUS / "tutorial")
    config = TrainConfig(
        data=CORPUS,
        batch_tokens=2048,
        max_length=512,
        experimental=Experimental(backend=backend, packing=True),
    )
    model, tokenizer = load_model(tiny_model_dir, config)
    examples, _ = tokenize_pairs(tokenizer, corpus.pairs[:60], config)
    trainer, progress = build_trainer(model, tokenizer, examples, config, tmp_path / "run")
    batches = list(trainer.get_train_dataloader())
    assert {tuple(b["input_ids"].shape) for b in batches} == {(1, 2048)}
    label_tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
    assert label_tokens == sum(sum(t != -100 for t in e["labels"]) for e in examples)
    assert progress.tokens_seen == sum(len(e["input_ids"]) for e in examples)

    rows = trainer.token_sampler.rows_of(next(iter(trainer.token_sampler)))
    assert max(len(row) for row in rows) > 1  # pairs share a row
    packed, crossed = packed_logit_gaps(model, batches[0], rows, examples)
    assert packed < 0.05 * crossed and crossed > 0.5, (packed, crossed)  # bf16 on the CPU
    with torch.no_grad():  # and the trainer's own loss call keeps them apart too
        loss = trainer.compute_loss(model, dict(batches[0])).item()
        total = tokens = 0.0
        for index in (i for row in rows for i in row):
            ids, labels = (torch.tensor([examples[index][k]]) for k in ("input_ids", "labels"))
            counted = int((labels[0, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * counted
            tokens += counted
    assert loss == pytest.approx(total / tokens, rel=3e-5)  # crossed: 1.1e-3 off


def test_bad_fixed_shapes_are_refused_before_any_work(tmp_path: Path) -> None:
    for wrong, message in (("-1", "give 0 (off) or more"), ("12", "more shapes than Unsloth")):
        done = polingo(
            "train", "--data", str(tmp_path / "nothing-here"), "--cuda-graphs",
            "--fixed-shapes", wrong, "--registry", str(tmp_path / "reg"), timeout=120,
        )  # fmt: skip
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and not (tmp_path / "reg").exists()


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="the CPU refusal of a GPU-only switch"
)
def test_cuda_graphs_without_a_gpu_are_refused(tmp_path: Path) -> None:
    done = polingo(
        "train", "--data", str(tmp_path / "nothing-here"), "--cuda-graphs",
        "--registry", str(tmp_path / "reg"), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: --cuda-graphs needs a CUDA GPU" in done.stderr
    assert not (tmp_path / "reg").exists()


def test_unsloth_on_cuda_trains_without_cudnn_attention(monkeypatch) -> None:  # noqa: ANN001
    """The switch is global to torch: off while Unsloth trains on CUDA, put back after,
    even when training fails; left alone for the peft baseline and on the CPU."""
    import torch

    from training.config import Experimental, TrainConfig
    from training.train import attention_backends

    def config(backend: str) -> TrainConfig:
        return TrainConfig(data=Path("."), experimental=Experimental(backend=backend))

    assert torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(RuntimeError), attention_backends(config(backend="unsloth")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        raise RuntimeError("training failed")
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_backends(config(backend="peft")):
        assert torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with attention_backends(config(backend="unsloth")):
        assert torch.backends.cuda.cudnn_sdp_enabled()


def test_inplace_swiglu_backward_registers_as_a_custom_op() -> None:
    """torch.library infers the op's schema from its annotations when it registers, and
    refuses what it cannot resolve (a first version stopped every GPU run that way).
    The op itself runs on the GPU only (tests/test_gpu_training.py). In its own
    process: it patches Unsloth for good."""
    import subprocess
    import sys

    from cli.main import build_parser, config_from_args

    code = (
        "from training.unsloth_loader import import_unsloth\n"
        "import_unsloth()\n"
        "import torch\n"
        "from unsloth.kernels import fast_lora\n"
        "from training.unsloth_kernels import use_inplace_swiglu_backward as use\n"
        "assert use() and use()\n"
        "print(torch.ops.polingo.swiglu_backward_.default._schema)\n"
        "print(fast_lora.swiglu_DWf_DW_dfg_kernel.__qualname__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    schema, patched = done.stdout.strip().splitlines()[-2:]
    assert "Tensor(a0!) dw, Tensor(a1!) e, Tensor(a2!) g" in schema, schema
    assert patched.startswith("_register"), patched
    default = config_from_args(build_parser().parse_args(["train", "--data", "x"]))
    off = build_parser().parse_args(["train", "--data", "x", "--no-inplace-swiglu"])
    assert default.experimental.inplace_swiglu is True
    assert config_from_args(off).experimental.inplace_swiglu is False


# ---- prompt contract -----------------------------------------------------------------


def test_markup_protection_round_trips() -> None:
    source = "Use :func:`len` on ``data``; see `docs <https://x.y>`_ and :func:`len`."
    protected, _, items = protect(source)
    assert "`" not in protected and protected.count("\u27e61\u27e7") == 2
    assert restore(protected, items) == source
    # training: only items that the human translation keeps verbatim are replaced
    src, tgt, kept = protect(source, "對 ``data`` 使用 :func:`len`，見\\ `文件 <https://x.y>`_。")
    assert kept == [":func:`len`", "``data``"]
    assert "`docs <https://x.y>`_" in src and "`文件 <https://x.y>`_" in tgt


def test_training_prompt_is_the_serving_prompt(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(PromptContract(), tokenizer)
    input_ids, labels = builder.example("Call :func:`len`.", "呼叫 :func:`len`。", "ctx")
    prompt = builder.prompt("Call :func:`len`.", "ctx").prompt_ids
    target = "呼叫 \u27e61\u27e7。"
    assert input_ids[: len(prompt)] == prompt
    assert labels[: len(prompt)] == [-100] * len(prompt)
    completion = tokenizer.decode(labels[len(prompt) :])
    assert completion == target + end_of_turn_text(tokenizer)
    assert "\u27e61\u27e7" in completion


# ---- the real commands (slow) ------------------------------------------------------------


@pytest.mark.slow
def test_train_then_eval_with_vllm(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = tutorial_docs(tmp_path)
    registry = tmp_path / "registry"
    done = polingo(
        *train_args(docs, tiny_model_dir, registry, "--max-pairs", "120", "--max-steps", "30",
                    "--learning-rate", "3e-3", "--batch-tokens", "2048", "--logging-steps", "5",
                    "--eval", "4", "--stats-file", str(tmp_path / "stats.json")),
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tok/s" in done.stderr and "ETA" in done.stderr  # progress is shown

    reg = Registry(registry)
    assert reg.versions("zh") == ["v1"] and reg.current("zh") == "v1"
    manifest = reg.manifest("zh")
    losses = json.loads((reg.path("zh") / "report" / "loss.json").read_text())
    assert losses[-1][1] < losses[0][1]  # the loss falls
    assert manifest.base_model == str(tiny_model_dir)
    assert 100 <= manifest.data.train_pairs <= 120 and manifest.data.heldout_pairs > 0
    assert manifest.data.fingerprint.startswith("sha256:")
    training = manifest.training
    assert training["rank"] == 16 and training["experimental"]["backend"] == "unsloth"
    assert {"device", "train_seconds", "tokens_per_second", "first_loss", "final_loss"} <= set(
        training
    )
    assert training["device"] == "cpu" and training["final_loss"] < training["first_loss"]
    # the benchmarks' statistics go to the file they ask for, not into every manifest
    stats = json.loads((tmp_path / "stats.json").read_text())
    for key in ("batches_per_epoch", "padding_efficiency", "train_tokens", "epoch_tokens"):
        assert key not in training and stats[key] > 0, key
    assert stats["tokens_per_second"] == training["tokens_per_second"]
    assert stats["device"] == "cpu" and stats["batches_per_epoch"] >= 1
    assert stats["train_tokens"] <= 30 * 2048 and stats["padding_efficiency"] <= 1
    # the whole loss curve, the report's, for comparing runs (bench_train.py)
    assert [step for step, _ in stats["losses"]] == [step for step, _ in losses]
    assert [loss for _, loss in stats["losses"]] == pytest.approx(
        [loss for _, loss in losses], abs=1e-4
    )
    # the CPU default as it ran (transformers may pick torch's fused AdamW for it)
    assert manifest.training["optimizer"].startswith("adamw_torch")
    assert manifest.command.startswith("polingo train --data")
    # evaluated through vLLM (the adapter loads there) with the copy-the-source baseline
    assert manifest.metrics["pairs"] == 4 and "chrf" in manifest.metrics
    assert manifest.baseline_metrics["chrf"] > 0
    # the markup retry's starting point is scored too, and every prediction is kept
    assert {"chrf_greedy", "markup_kept_greedy", "markup_retried"} <= manifest.metrics.keys()
    assert manifest.metrics["markup_repaired"] <= manifest.metrics["markup_retried"] <= 4
    rows = (reg.path("zh") / "report" / "predictions.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in rows.splitlines()]
    assert len(rows) == 4 and all({"msgid", "reference", "output"} <= r.keys() for r in rows)
    adapter_config = json.loads((reg.path("zh") / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert not adapter_config.get("modules_to_save")  # no embeddings / lm_head in LoRA form
    memory = (reg.path("zh") / "memory.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(memory) == 120 and {"msgid", "msgstr", "msgctxt"} <= json.loads(memory[0]).keys()
    assert (reg.path("zh") / "report" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "chrf" in (reg.path("zh") / "report" / "README.md").read_text()


@pytest.mark.slow
def test_killed_training_leaves_registry_untouched_and_resumes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry = tmp_path / "registry"
    args = train_args(
        tutorial_docs(tmp_path), tiny_model_dir, registry, "--max-pairs", "64", "--max-steps",
        "40", "--batch-tokens", "1024", "--save-steps", "3", "--logging-steps", "1",
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = registry / "zh" / ".checkpoints"
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("*/checkpoint-6")):
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Registry(registry).versions("zh") == []
    assert not (registry / "zh" / "CURRENT").exists()

    resumed = polingo(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-" in resumed.stderr
    assert Registry(registry).versions("zh") == ["v1"]
    assert not list(checkpoints.glob("*"))  # the run's checkpoints are gone once exported


def test_unknown_optimizer_is_refused_before_any_work(tmp_path: Path) -> None:
    done = polingo(
        "train", "--data", str(tmp_path / "nothing-here"), "--optim", "adamw_9bit",
        "--registry", str(tmp_path / "reg"), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: --optim 'adamw_9bit' is not an optimizer" in done.stderr
    assert "adamw_torch_fused" in done.stderr  # the message shows what is known
    assert not (tmp_path / "reg").exists()


# ---- settings: the config, its validation and the generated options -------------------


def _train_parser():  # noqa: ANN202
    from cli.main import build_parser

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return sub.choices["train"]


def test_train_options_are_generated_from_the_config() -> None:
    """Each field of TrainConfig and its Experimental group has exactly one option, with
    a help text, and a value given there arrives in that field."""
    import dataclasses

    from cli.main import config_from_args
    from training.config import Experimental, TrainConfig, flag

    parser = _train_parser()
    defaults = TrainConfig(data=Path("d"))
    argv, expected = ["--data", "d"], {}
    for cls, owner in ((TrainConfig, defaults), (Experimental, defaults.experimental)):
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal") or f.metadata.get("group") or f.name == "data":
                continue
            options = [
                a
                for a in parser._actions
                if a.dest == f.name and a.option_strings != ["--no-protect-markup"]  # an alias
            ]
            assert len(options) == 1, f.name
            assert len(options[0].help) > 10, f.name
            value, args = _other_value(f.name, getattr(owner, f.name), flag(f.name, cls))
            argv += args
            expected[f.name] = value
    config = config_from_args(parser.parse_args(argv))
    expected["contract"] = expected["contract"].with_update()  # what --updates turns on
    for name, value in expected.items():
        got = getattr(config.experimental if hasattr(Experimental, name) else config, name)
        assert got == value, (name, got, value)
    assert "experimental (benchmarks)" in parser.format_help()
    # the options users rely on are still there
    users_rely_on = [
        "--rank", "--alpha", "--learning-rate", "--epochs", "--max-steps", "--max-length",
        "--batch-tokens", "--grad-accum", "--optim", "--seed", "--max-pairs",
        "--heldout-percent", "--4bit", "--no-4bit", "--no-protect-markup", "--resume",
        "--save-steps", "--logging-steps", "--eval", "--promote", "--data", "--base-model",
        "--adapter", "--registry", "--backend", "--fixed-shapes", "--cuda-graphs",
        "--no-inplace-swiglu",
    ]  # fmt: skip
    for option in users_rely_on:
        assert option in parser._option_string_actions, option


def _other_value(name: str, default: object, option: str) -> tuple[object, list[str]]:
    """A value unlike the default for a field, and the arguments that give it."""
    if name == "contract":
        return PromptContract(protect_markup=False), [option, "raw"]
    if name in ("backend", "optim"):
        value = {"backend": "peft", "optim": "adamw_torch"}[name]
        return value, [option, value]
    if isinstance(default, bool) or default is None and name == "load_in_4bit":
        return (not default), [option if not default else "--no-" + option[2:]]
    if name in ("stats_file", "registry", "updates", "terms"):
        return Path("elsewhere"), [option, "elsewhere"]
    if name == "extra_data":
        return (Path("old"), Path("updates.jsonl")), [option, "old", "updates.jsonl"]
    if isinstance(default, str):
        return "other", [option, "other"]
    value = 5 if default is None else default + (0.25 if isinstance(default, float) else 3)
    return value, [option, str(value)]


def test_retrain_reads_the_config_back_from_a_manifest(tmp_path: Path) -> None:
    """polingo retrain builds the candidate's config from the parent's recorded
    settings: the experimental group comes back whole, and keys of switches that are
    gone (older manifests) are ignored."""
    import argparse

    from core.registry import DataSummary, Manifest
    from training.config import Experimental, TrainConfig, recorded_settings
    from training.retrain import candidate_config

    config = TrainConfig(
        data=Path("d"), adapter="zh", base_model="tiny", rank=8,
        experimental=Experimental(backend="peft"),
    )  # fmt: skip
    settings = recorded_settings(config)
    settings["experimental"]["padding_free"] = True  # switches of older versions
    settings.update(pad_multiple=64, cudnn_attention=True, device="cpu", tokens_per_second=1.0)
    registry = Registry(tmp_path / "reg")
    with registry.new_version("zh") as (version, folder):
        manifest = Manifest(
            name="zh",
            version=version,
            base_model="tiny",
            contract=PromptContract(),
            data=DataSummary(fingerprint="sha256:x", source="d"),
            training=settings,
        )
        registry.write_manifest(folder, manifest)
    args = argparse.Namespace(
        docs=tmp_path / "docs", registry=registry.root, start="base", epochs=2.0,
        learning_rate=None, max_steps=None, max_pairs=None, contract=None,
    )  # fmt: skip
    again = candidate_config(registry, "zh@v1", args)
    assert again.rank == 8 and again.epochs == 2.0 and again.parent == "zh@v1"
    assert again.experimental == Experimental(backend="peft")
    assert {**recorded_settings(again), "epochs": 1.0} == recorded_settings(config)
    assert again.contract == PromptContract()  # the parent's, unless --contract says
    from core.prompt import CONTRACT_PRESETS

    args.contract = CONTRACT_PRESETS["v2"]
    assert candidate_config(registry, "zh@v1", args).contract == CONTRACT_PRESETS["v2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rank", "0"], "--rank 0: give 1 or more"),
        (["--batch-tokens", "256"], "--batch-tokens 256 is less than --max-length 512"),
        (["--heldout-percent", "100"], "--heldout-percent 100.0: give a percent"),
        (["--max-steps", "0"], "--max-steps 0: give -1 (the epochs) or 1 or more"),
        (["--fixed-shapes", "-2"], "--fixed-shapes -2: give 0 (off) or more"),
        (["--packing", "--fixed-shapes", "2"], "--packing already gives one shape"),
        (["--learning-rate", "0"], "--learning-rate 0.0: give a positive rate"),
        (["--updates", "/nonexistent.jsonl"], "--updates /nonexistent.jsonl: no such file"),
    ],
)
def test_bad_settings_exit_2_with_a_message_before_any_model_loads(
    tmp_path: Path,
    monkeypatch,
    capsys,
    argv: list[str],
    message: str,  # noqa: ANN001
) -> None:
    import training.train
    from cli.main import main
    from training.config import ConfigError, validate

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data or the model was loaded before the settings were checked")

    monkeypatch.setattr(training.train, "load_pairs", must_not_run)
    monkeypatch.setattr(training.train, "load_model", must_not_run)
    docs = write_po(tmp_path / "docs" / "a.po", 'msgid "Hello"\nmsgstr "你好"\n').parent
    code = main(["train", "--data", str(docs), "--registry", str(tmp_path / "reg"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "reg").exists()
    # as a library: a ValueError that names the field, never SystemExit
    from cli.main import config_from_args

    config = config_from_args(_train_parser().parse_args(["--data", str(docs), *argv]))
    with pytest.raises(ConfigError, match=message.split(":")[0]) as raised:
        validate(config)
    assert raised.value.field.replace("_", "-") in message


def test_no_systemexit_in_library_code() -> None:
    root = Path(__file__).resolve().parents[1] / "training"
    offenders = [p.name for p in root.glob("*.py") if "SystemExit" in p.read_text()]
    assert offenders == []
