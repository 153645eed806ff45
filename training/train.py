"""Recipe: catalogs -> LoRA adapter version in the registry.

``train()`` reads top to bottom:
1. setup: check the settings (training/config.py), set the process-wide switches,
   read the pairs, load the base model with fresh LoRA weights (Unsloth; QLoRA 4-bit on
   CUDA, 16-bit LoRA on CPU), tokenise through the shared prompt contract, build a TRL
   SFTTrainer over token-budget batches;
2. train, resumable from the run's last checkpoint;
3. export adapter, manifest, translation memory, data index and report into a new
   registry version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.base_models import resolve_base_model
from core.memory import TranslationMemory
from core.prompt import Previous, PromptBuilder
from core.registry import DATA_INDEX, MEMORY, DataSummary, Manifest, Registry, now
from core.terms import Term, corpus_terms, merge_terms, read_terms, write_terms
from training.batching import PackedBatchSampler, TokenBudgetBatchSampler, pad_to_shape
from training.config import TrainConfig, cuda_graph_shape_cap, recorded_settings, validate
from training.console import log
from training.data import (
    Corpus,
    Pair,
    Splits,
    data_index,
    extra_pairs,
    is_document_heldout,
    is_heldout,
    load_corpus,
)
from training.progress import Progress
from training.report import write_report
from training.unsloth_loader import import_unsloth
from training.updates import Update, load_updates

# LoRA on the linear projections only: vLLM cannot serve LoRA on embeddings or lm_head.
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainingDataError(ValueError):
    """The data leaves nothing to train on."""


@dataclass
class TrainResult:
    version: str
    path: Path
    train_loss: list[tuple[int, float]]
    tokens_per_second: float
    peak_memory_gib: float | None
    seconds: float


@dataclass
class Pairs:
    """The catalogs read, and their split."""

    corpus: Corpus
    train: list[Pair]
    heldout: list[Pair]  # the pair split
    documents: list[Pair]  # the document split: never in train, nor in the memory
    document_files: list[str]
    extra: list[Pair]  # extra training text: trained on, not in the memory
    terms: list[Term]  # the glossary's, when the contract puts terms in the prompt
    updates: list[Update]  # update triples (--updates), held-out msgids left out


def train(config: TrainConfig, corpus: Corpus | None = None) -> TrainResult:
    """``corpus``: ``config.data`` already read (retrain reads it once for everything).
    Bad settings or data raise ValueError (ConfigError, TrainingDataError)."""
    started = time.time()
    # 1. setup
    validate(config)
    config = set_process_switches(config)
    pairs = load_pairs(config, corpus)
    model, tokenizer = load_model(resolve_base_model(config.base_model), config)
    examples, too_long = tokenize_pairs(
        tokenizer, pairs.train, config, pairs.terms, pairs.updates, extra=pairs.extra
    )
    if not examples:
        raise TrainingDataError(f"every pair is longer than --max-length {config.max_length}")
    log(
        f"tokens: {sum(len(e['input_ids']) for e in examples)} in {len(examples)} examples "
        f"({too_long} dropped as longer than {config.max_length})"
    )
    registry = Registry(config.registry)
    run_dir = registry.root / config.adapter / ".checkpoints" / _run_id(pairs.corpus, config)
    trainer, progress = build_trainer(model, tokenizer, examples, config, run_dir)

    # 2. train
    resume = _last_checkpoint(run_dir) if config.resume else None
    if config.resume:
        log(
            f"resuming from {resume}"
            if resume
            else f"--resume: no checkpoint in {run_dir}, starting afresh"
        )
    with attention_backends(config):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # 3. export
    manifest = build_manifest(config, pairs, examples, too_long, trainer, progress)
    path = export(registry, manifest, model, pairs, progress.losses)
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = manifest.training
    if config.experimental.stats_file is not None:
        epoch_tokens = sum(len(e["input_ids"]) for e in examples)
        stats = {**progress.stats(), "device": summary["device"], "epoch_tokens": epoch_tokens}
        config.experimental.stats_file.write_text(json.dumps(stats, indent=1) + "\n")
    peak = summary.get("peak_memory_gib")
    log(
        f"saved {manifest.name}@{manifest.version} to {path} "
        f"({summary['tokens_per_second']:,.0f} tok/s"
        + (f", peak GPU memory {peak} GiB)" if peak is not None else ")")
    )
    return TrainResult(
        version=manifest.version,
        path=path,
        train_loss=progress.losses,
        tokens_per_second=float(summary["tokens_per_second"]),  # type: ignore[arg-type]
        peak_memory_gib=peak,  # type: ignore[arg-type]
        seconds=time.time() - started,
    )


def set_process_switches(config: TrainConfig) -> TrainConfig:
    """Environment switches Unsloth reads once, set before it loads; with CUDA graphs,
    the batch shapes that they replay (Unsloth's cap unless --fixed-shapes says fewer)."""
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    x = config.experimental
    if x.cuda_graphs:
        os.environ["UNSLOTH_BLOCK_CUDAGRAPHS"] = "1"
        if not x.packing:  # packing gives every batch one shape already
            x = replace(x, fixed_shapes=x.fixed_shapes or cuda_graph_shape_cap())
        config = replace(config, experimental=x)
    if x.backend == "unsloth":
        import_unsloth()  # before transformers: it patches them
    return config


def load_pairs(config: TrainConfig, corpus: Corpus | None = None) -> Pairs:
    if corpus is None:
        corpus = load_corpus(config.data)
    for problem in corpus.problems:
        log(f"warning: skipped {problem}")
    splits = corpus.splits(config.heldout_percent, config.document_percent)
    train_pairs, heldout = splits.train, splits.pairs
    if config.max_pairs:
        train_pairs = sorted(train_pairs, key=lambda p: _hash(p.key))[: config.max_pairs]
    if not train_pairs:
        raise TrainingDataError(f"no translated pairs found under {config.data}")
    log(
        f"data: {len(train_pairs)} training pairs, held out: {len(heldout)} (pair split), "
        f"{len(splits.documents)} in {len(splits.document_files)} whole catalogs "
        f"(document split), from {corpus.files} catalogs"
    )
    extra = load_extra(config, corpus)
    terms = corpus_terms(config.data) if config.contract.terms else []
    if config.contract.terms:
        log(f"terms: {len(terms)} from {config.data / 'glossary.po'}")
    if config.contract.terms and config.terms is not None:
        glossary = len(terms)
        terms = merge_terms(terms, read_terms(config.terms))
        log(f"terms: {len(terms) - glossary} more from {config.terms}")
    return Pairs(
        corpus=corpus,
        train=train_pairs,
        heldout=heldout,
        documents=splits.documents,
        document_files=splits.document_files,
        extra=extra,
        terms=terms,
        updates=load_update_triples(config, splits),
    )


def load_extra(config: TrainConfig, corpus: Corpus) -> list[Pair]:
    """The extra training text (``--extra-data``), held-out texts left out."""
    if not config.extra_data:
        return []
    extra, counts = extra_pairs(
        config.extra_data,
        corpus,
        heldout_percent=config.heldout_percent,
        document_percent=config.document_percent,
    )
    log(
        f"extra training text: {len(extra)} pairs from {len(config.extra_data)} sources "
        f"(left out: {counts.get('known', 0)} the data translates, "
        f"{counts.get('document_split', 0)} of held-out catalogs, "
        f"{counts.get('pair_split', 0)} held-out msgids, "
        f"{counts.get('too_long', 0)} too long)"
    )
    return extra


def load_update_triples(config: TrainConfig, splits: Splits) -> list[Update]:
    """The update triples (``--updates``) less those of either held-out split: a held-out
    msgid (or previous msgid) stays unseen in update prompts too, and so does every
    text of a held-out catalog (by its path, as the document split chooses them)."""
    if config.updates is None:
        return []
    try:
        found = load_updates(config.updates)
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    documents = {p.msgid for p in splits.documents}

    def held(u: Update) -> bool:
        texts = (u.msgid, u.previous_msgid)
        return (
            any(is_heldout(t, config.heldout_percent) or t in documents for t in texts)
            or bool(u.file)
            and is_document_heldout(u.file, config.document_percent)
        )

    updates = [u for u in found if not held(u)]
    log(
        f"updates: {len(updates)} update triples from {config.updates} "
        f"({len(found) - len(updates)} held out)"
    )
    return updates


def load_model(base_dir: Path, config: TrainConfig) -> tuple[Any, Any]:
    """The base model with fresh (or ``init_adapter``) LoRA weights, ready to train."""
    import torch

    cuda = torch.cuda.is_available()
    four_bit = cuda if config.load_in_4bit is None else config.load_in_4bit
    if config.experimental.backend == "unsloth":
        model, tokenizer = _load_unsloth(base_dir, config, cuda=cuda, four_bit=four_bit)
    elif config.experimental.backend == "peft":
        model, tokenizer = _load_peft(base_dir, config, cuda=cuda, four_bit=four_bit)
    else:
        raise ValueError(f"unknown --backend {config.experimental.backend!r}")
    if config.init_adapter is not None:
        _load_adapter_weights(model, config.init_adapter)
    return model, tokenizer


def cpu_dtype() -> Any:
    """bf16 where the CPU computes it natively (AVX-512 BF16, AMX), else float32: an
    AVX2-only CPU emulates bf16, and one 3B step took over 35 minutes that way."""
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else torch.float32


def _load_unsloth(
    base_dir: Path, config: TrainConfig, *, cuda: bool, four_bit: bool
) -> tuple[Any, Any]:
    import_unsloth()  # safe on an AVX2-only CPU (training/unsloth_loader.py)
    from unsloth import FastLanguageModel

    if cuda and config.experimental.inplace_swiglu:
        from training.unsloth_kernels import use_inplace_swiglu_backward

        use_inplace_swiglu_backward()
    if cuda and config.experimental.packing and config.experimental.flash_varlen:
        from training.unsloth_kernels import use_flash_varlen_for_packing

        if use_flash_varlen_for_packing():
            log("packed attention: one flash varlen call a layer")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=config.max_length,
        dtype=None if cuda else cpu_dtype(),
        load_in_4bit=four_bit,
        local_files_only=True,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=TARGET_MODULES,
        bias="none",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
    )
    return model, tokenizer


def _load_peft(
    base_dir: Path, config: TrainConfig, *, cuda: bool, four_bit: bool
) -> tuple[Any, Any]:
    """The benchmarks' baseline: plain transformers + PEFT + bitsandbytes."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = (
        BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        if four_bit
        else None
    )
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch.bfloat16,
        quantization_config=quant,
        device_map={"": 0} if cuda else None,
    )
    if four_bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=TARGET_MODULES,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), tokenizer


def _load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter {adapter_dir} does not fit the model ({unexpected[:3]} ...)")
    log(f"initialised LoRA weights from {adapter_dir}")


def tokenize_pairs(
    tokenizer: Any,
    pairs: list[Pair],
    config: TrainConfig,
    terms: list[Term] | None = None,
    updates: list[Update] | None = None,
    *,
    extra: list[Pair] | None = None,
) -> tuple[list[dict[str, list[int]]], int]:
    """Training examples through the prompt builder the service uses, and how many were
    too long: the pairs, the extra pairs, then the update triples in update prompts.
    Memory examples come from the other training pairs (leave-one-out), as the adapter's
    memory.jsonl will hold them; ``extra`` pairs train with examples from that memory,
    but are in it for no other pair."""
    memory = TranslationMemory()
    for pair in pairs:
        memory.add(pair.msgid, pair.msgstr, pair.msgctxt)
    builder = PromptBuilder(config.contract, tokenizer, memory, terms, max_length=config.max_length)
    rows = [(p.msgid, p.msgstr, p.msgctxt, None) for p in pairs + (extra or [])] + [
        (u.msgid, u.msgstr, u.msgctxt, Previous(u.previous_msgid, u.old_msgstr))
        for u in updates or []
    ]
    sources = [row[0] for row in rows]
    retrieved = builder.examples_for(sources, sources)
    examples, too_long = [], 0
    for (source, target, msgctxt, previous), shown in zip(rows, retrieved, strict=True):
        input_ids, labels = builder.example(
            source, target, msgctxt, examples=shown, previous=previous
        )
        if len(input_ids) > config.max_length:
            too_long += 1
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
    return examples, too_long


def build_trainer(
    model: Any,
    tokenizer: Any,
    examples: list[dict[str, list[int]]],
    config: TrainConfig,
    run_dir: Path,
) -> tuple[Any, Progress]:
    """A TRL SFTTrainer that draws token-budget batches of ``examples``."""
    from datasets import Dataset

    lengths = [len(e["input_ids"]) for e in examples]
    x = config.experimental
    sampler: TokenBudgetBatchSampler | PackedBatchSampler
    if x.packing:
        sampler = PackedBatchSampler(lengths, config.batch_tokens, 1, seed=config.seed)
        examples = [{**e, "index": i} for i, e in enumerate(examples)]
        shapes = f", one shape 1x{config.batch_tokens}, pairs packed"
    else:
        sampler = TokenBudgetBatchSampler(
            lengths, config.batch_tokens, seed=config.seed, fixed_shapes=x.fixed_shapes
        )
        shapes = "".join(f" {rows}x{n}" for n, rows in sampler.shapes.items())
        shapes = f", shapes{shapes}" if shapes else ""
    log(
        f"batches: {len(sampler)} a epoch, {config.batch_tokens} padded tokens at most, "
        f"{sampler.padding_efficiency():.0%} of batch cells are real tokens{shapes}"
    )
    progress = Progress(
        batches_per_epoch=len(sampler), padding_efficiency=sampler.padding_efficiency()
    )
    trainer = _token_budget_trainer_class()(
        sampler=sampler,
        progress=progress,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        model=model,
        args=sft_arguments(config, run_dir),
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=[progress.callback()],
    )
    return trainer, progress


def sft_arguments(config: TrainConfig, run_dir: Path) -> Any:
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=1,  # unused: batches come from the token-budget sampler
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # below 1: a share of the steps
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        optim=config.optim or ("adamw_8bit" if cuda else "adamw_torch"),
        report_to=[],
        max_length=config.max_length,
        # Padded rows. Unsloth would otherwise turn padding-free batches on, which ran at
        # 0.59x the padded, block-compiled rows on the H200 (docs/benchmarks.md).
        padding_free=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        disable_tqdm=True,
    )


def _token_budget_trainer_class() -> type:
    """Built on call: trl's SFTTrainer is Unsloth's patched one once Unsloth is imported."""
    from torch.utils.data import DataLoader
    from transformers import Trainer
    from trl import SFTTrainer

    class TokenBudgetSFTTrainer(SFTTrainer):
        def __init__(
            self, *args: Any, sampler: TokenBudgetBatchSampler, progress: Progress, pad_id: int,
            **kwargs: Any,
        ) -> None:  # fmt: skip
            self.token_sampler, self.progress, self.pad_id = sampler, progress, pad_id
            super().__init__(*args, **kwargs)

        def get_train_dataloader(self) -> DataLoader:
            sampler = self.token_sampler

            # TRL's own collator pads; we count the real tokens and, with fixed shapes,
            # pad to the batch's shape.
            def collate(batch: list[dict[str, list[int]]]) -> Any:
                self.progress.tokens_seen += sum(len(e["input_ids"]) for e in batch)
                if isinstance(sampler, PackedBatchSampler):
                    return sampler.collate(batch, self.pad_id)
                out = self.data_collator(batch)
                shape = sampler.shape_for(max(len(e["input_ids"]) for e in batch))
                return out if shape is None else pad_to_shape(out, *shape, pad_id=self.pad_id)

            loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=collate)
            return self.accelerator.prepare(loader)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN202
            if self.args.use_cpu:  # Unsloth's CPU trainer already chunks the loss, no metrics
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # The model's own loss (Unsloth's fused cross-entropy; transformers' for the
            # baseline). TRL's re-runs the LM head for entropy and token-accuracy logs and
            # reads them back every step (a GPU sync), and the 3B step is CPU-bound.
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return TokenBudgetSFTTrainer


@contextlib.contextmanager
def attention_backends(config: TrainConfig) -> Iterator[None]:
    """Unsloth on CUDA trains without SDPA's cuDNN backend, which cost host time a call
    and kept fp32 buffers on the H200 (docs/benchmarks.md); the global switch is put
    back afterwards. The peft baseline keeps torch's choice."""
    import torch

    if config.experimental.backend != "unsloth" or not torch.cuda.is_available():
        yield
        return
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def build_manifest(
    config: TrainConfig,
    pairs: Pairs,
    examples: list[dict[str, list[int]]],
    too_long: int,
    trainer: Any,
    progress: Progress,
) -> Manifest:
    return Manifest(
        name=config.adapter,
        version="",
        base_model=config.base_model,
        contract=config.contract,
        data=DataSummary(
            fingerprint=pairs.corpus.fingerprint(),
            source=str(config.data),
            files=pairs.corpus.files,
            pairs=len(pairs.corpus.pairs),
            train_pairs=len(examples),
            heldout_pairs=len(pairs.heldout),
            document_pairs=len(pairs.documents),
            document_files=pairs.document_files,
            extra_pairs=len(pairs.extra),
            dropped_too_long=pairs.corpus.dropped_too_long + too_long,
        ),
        training={
            **recorded_settings(config),
            "device": _device_name(),
            "optimizer": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
            "update_triples": len(pairs.updates),
            **progress.summary(),
        },
        parent=config.parent,
        created_at=now(),
        command=config.command,
    )


def export(
    registry: Registry,
    manifest: Manifest,
    model: Any,
    pairs: Pairs,
    losses: list[tuple[int, float]],
) -> Path:
    """Write a new version of ``manifest.name``, whole or not at all; its folder."""
    with registry.new_version(manifest.name) as (version, folder):
        manifest.version = version
        model.save_pretrained(str(folder))
        normalize_adapter_config(folder, manifest.base_model)
        write_memory(folder / MEMORY, pairs.train)
        if manifest.contract.terms:
            write_terms(folder, pairs.terms)
        (folder / DATA_INDEX).write_text(json.dumps(data_index(pairs.corpus.pairs)))
        registry.write_manifest(folder, manifest)
        write_report(folder, manifest, losses, examples=[])
    return registry.root / manifest.name / version


def normalize_adapter_config(folder: Path, base_model: str) -> None:
    """Make the saved adapter_config.json portable: Unsloth writes ``target_modules`` as
    one regex and points at its own compiled module classes; servers (vLLM, our
    checks) want the plain list of module names that carry LoRA weights."""
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as weights:
        modules = sorted({key.split(".lora_")[0].rsplit(".", 1)[-1] for key in weights.keys()})  # noqa: SIM118
    path = folder / "adapter_config.json"
    adapter_config = json.loads(path.read_text())
    adapter_config.update(
        target_modules=modules, base_model_name_or_path=base_model, auto_mapping=None
    )
    path.write_text(json.dumps(adapter_config, indent=2) + "\n")


def write_memory(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for p in pairs:
            out.write(
                json.dumps(
                    {"msgid": p.msgid, "msgctxt": p.msgctxt, "msgstr": p.msgstr}, ensure_ascii=False
                )
            )
            out.write("\n")


def _run_id(corpus: Corpus, config: TrainConfig) -> str:
    """The checkpoint folder's name: the data and the settings that shape the weights."""
    settings = json.dumps(recorded_settings(config), sort_keys=True, default=str)
    return _hash(corpus.fingerprint() + settings)[:12]


def _last_checkpoint(run_dir: Path) -> Path | None:
    # trainer_state.json is written last: a checkpoint without it was cut short by a kill
    found = [
        p
        for p in run_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
