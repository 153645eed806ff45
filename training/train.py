"""Recipe: catalogs -> LoRA adapter version in the registry.

Reads top to bottom: ``TrainConfig`` (every knob, with its default), then
``train()``: load pairs -> load the base model (Unsloth; QLoRA 4-bit on CUDA,
16-bit LoRA on CPU) -> tokenise through the shared prompt contract -> TRL
SFTTrainer over token-budget batches -> export adapter, manifest, translation
memory and report into a new registry version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from service.contract import PromptContract, encode_example, prepare_pair
from service.registry import DATA_INDEX, MEMORY, DataSummary, Manifest, Registry, now
from training.batching import TokenBudgetBatchSampler, pad_to_shape
from training.data import Corpus, Pair, data_index, load_corpus

# LoRA on the linear projections only: vLLM cannot serve LoRA on embeddings or lm_head.
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    data: Path
    adapter: str = "zh-tw"
    registry: Path = Path("var/registry")
    base_model: str = "gemma3-270m"
    rank: int = 16  # LoRA rank: higher learns more, costs memory and serving speed
    alpha: int = 32
    dropout: float = 0.0
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 stops early (smoke runs)
    max_length: int = 512  # prompt + translation tokens; longer pairs are dropped and counted
    # Padded tokens per batch. 3B QLoRA on the H200 at the defaults: 8192 peaks at 3.31 GiB
    # (5120, before the in-place SwiGLU: 3.17) and runs faster, since the step is bound by
    # kernel launches (docs/benchmarks.md).
    batch_tokens: int = 8192
    # Batch lengths rounded up to this. 1: Unsloth's compiled blocks take new shapes after
    # one recompile (measured steady on the H200), so rounding would only add padding.
    pad_multiple: int = 1
    # Padding-free batches: a batch's examples run as one row, attention kept apart per
    # example (varlen kernels; Unsloth only). Off by default: on the H200 without
    # flash-attn it ran at 0.59x the padded, block-compiled rows (docs/benchmarks.md).
    padding_free: bool = False
    # Every batch one of this many (rows, length) shapes (0: off), for CUDA graphs, which
    # replay only the shapes they recorded (Unsloth's UNSLOTH_BLOCK_CUDAGRAPHS=1 keeps 8).
    fixed_shapes: int = 0
    # Replay each compiled decoder block as a CUDA graph (Unsloth's UNSLOTH_BLOCK_CUDAGRAPHS),
    # over as many fixed batch shapes as Unsloth replays (UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES,
    # 8) unless fixed_shapes says fewer. The 3B step is CPU-bound: on the H200 this ran
    # 1.6x faster, for 9.5 GiB instead of 3.3 (docs/benchmarks.md).
    cuda_graphs: bool = False
    # Let SDPA pick cuDNN attention in Unsloth's training blocks (off: flash or
    # memory-efficient attention). On the H200 cuDNN cost about 0.5 ms of host time a
    # call, Unsloth pads its sequences to 128-token buckets, and its backward kept fp32
    # buffers: without it the 3B step ran faster in less memory (docs/benchmarks.md).
    cudnn_attention: bool = False
    # Unsloth's SwiGLU backward in place inside its compiled blocks too (it allocates three
    # MLP-width tensors there otherwise): training/unsloth_kernels.py.
    inplace_swiglu: bool = True
    grad_accum: int = 1
    # transformers' optimizer name; None: bitsandbytes' 8-bit AdamW on CUDA (least state),
    # torch's AdamW on CPU
    optim: str | None = None
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0
    heldout_percent: float = 3.0
    max_pairs: int | None = None  # a deterministic subset, for quick runs
    load_in_4bit: bool | None = None  # default: True on CUDA (QLoRA), False on CPU
    backend: str = "unsloth"  # "unsloth" or "peft" (plain transformers + PEFT, the baseline)
    gradient_checkpointing: bool = True
    resume: bool = False
    save_steps: int = 200
    logging_steps: int = 10
    contract: PromptContract = field(default_factory=PromptContract)
    parent: str | None = None  # "NAME@VERSION" this version continues from (retrain)
    init_adapter: Path | None = None  # start from these LoRA weights instead of zeros
    command: str = ""


@dataclass
class TrainResult:
    version: str
    path: Path
    train_loss: list[tuple[int, float]]
    tokens_per_second: float
    peak_memory_gib: float | None
    seconds: float


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(config: TrainConfig, corpus: Corpus | None = None) -> TrainResult:
    """``corpus``: ``config.data`` already read (retrain reads it once for everything)."""
    started = time.time()
    if config.padding_free and config.backend != "unsloth":
        # plain transformers' SDPA would attend across the examples of the row
        raise SystemExit("error: --padding-free needs --backend unsloth")
    if config.fixed_shapes < 0:
        raise SystemExit(f"error: --fixed-shapes {config.fixed_shapes}: give 0 (off) or more")
    if config.cuda_graphs:
        import torch

        cap = int(os.environ.get("UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES", "8"))
        if config.fixed_shapes > cap:
            # past its cap Unsloth stops replaying graphs for the whole layer kind
            raise SystemExit(
                f"error: --fixed-shapes {config.fixed_shapes} is more shapes than Unsloth "
                f"replays as CUDA graphs ({cap}, UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES)"
            )
        if not torch.cuda.is_available():
            raise SystemExit("error: --cuda-graphs needs a CUDA GPU")
        if config.backend != "unsloth" or config.padding_free:
            raise SystemExit("error: --cuda-graphs needs --backend unsloth on padded rows")
        if "unsloth.models._block_compile" in sys.modules:
            # the switch is read once, when Unsloth first compiles blocks
            raise SystemExit("error: --cuda-graphs must be set before Unsloth compiled a model")
        os.environ["UNSLOTH_BLOCK_CUDAGRAPHS"] = "1"
        config = replace(config, fixed_shapes=config.fixed_shapes or cap)
    if config.padding_free and config.fixed_shapes:
        raise SystemExit("error: --fixed-shapes pads rows; it cannot go with --padding-free")
    if config.optim is not None:
        from transformers.training_args import OptimizerNames

        known = {o.value for o in OptimizerNames}
        if config.optim not in known:
            raise SystemExit(
                f"error: --optim {config.optim!r} is not an optimizer transformers knows "
                "(for example adamw_8bit, adamw_torch_fused, adamw_torch; all: "
                + ", ".join(sorted(known))
                + ")"
            )
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if config.backend == "unsloth":
        import unsloth  # noqa: F401  (must be imported before transformers to patch it)

    from service.base_models import resolve_base_model

    # 1. data
    if corpus is None:
        corpus = load_corpus(config.data)
    for problem in corpus.problems:
        log(f"warning: skipped {problem}")
    train_pairs, heldout = corpus.split(config.heldout_percent)
    if config.max_pairs:
        train_pairs = sorted(train_pairs, key=lambda p: _hash(p.key))[: config.max_pairs]
    if not train_pairs:
        raise SystemExit(f"error: no translated pairs found under {config.data}")
    log(
        f"data: {len(train_pairs)} training pairs, {len(heldout)} held out, "
        f"from {corpus.files} catalogs"
    )

    # 2. model
    base_dir = resolve_base_model(config.base_model)
    model, tokenizer = load_model(base_dir, config)

    # 3. tokens
    examples, too_long = tokenize_pairs(tokenizer, train_pairs, config)
    if not examples:
        raise SystemExit(f"error: every pair is longer than --max-length {config.max_length}")
    log(
        f"tokens: {sum(len(e['input_ids']) for e in examples)} in {len(examples)} examples "
        f"({too_long} dropped as longer than {config.max_length})"
    )

    # 4. train
    registry = Registry(config.registry)
    run_dir = (
        registry.root / config.adapter / ".checkpoints" / _run_id(corpus.fingerprint(), config)
    )
    trainer, progress = build_trainer(model, tokenizer, examples, config, run_dir)
    resume = _last_checkpoint(run_dir) if config.resume else None
    if config.resume:
        log(
            f"resuming from {resume}"
            if resume
            else f"--resume: no checkpoint in {run_dir}, starting afresh"
        )
    with attention_backends(config):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # 5. export
    summary = progress.summary()
    manifest = Manifest(
        name=config.adapter,
        version="",
        base_model=config.base_model,
        contract=config.contract,
        data=DataSummary(
            fingerprint=corpus.fingerprint(),
            source=str(config.data),
            files=corpus.files,
            pairs=len(corpus.pairs),
            train_pairs=len(examples),
            heldout_pairs=len(heldout),
            dropped_too_long=corpus.dropped_too_long + too_long,
        ),
        training={
            **_settings(config),
            "device": _device_name(),
            "optimizer": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
            "epoch_tokens": sum(len(e["input_ids"]) for e in examples),
            "batches_per_epoch": progress.batches_per_epoch,
            "padding_efficiency": round(progress.padding_efficiency, 4),
            **summary,
        },
        parent=config.parent,
        created_at=now(),
        command=config.command,
    )
    with registry.new_version(config.adapter) as (version, folder):
        manifest.version = version
        model.save_pretrained(str(folder))
        normalize_adapter_config(folder, config.base_model)
        write_memory(folder / MEMORY, train_pairs)
        (folder / DATA_INDEX).write_text(json.dumps(data_index(corpus.pairs)))
        registry.write_manifest(folder, manifest)
        from training.report import write_report

        write_report(folder, manifest, progress.losses, examples=[])
    shutil.rmtree(run_dir, ignore_errors=True)
    peak = summary.get("peak_memory_gib")
    memory_note = f", peak GPU memory {peak} GiB" if peak is not None else ""
    log(
        f"saved {config.adapter}@{version} to {registry.root / config.adapter / version} "
        f"({summary['tokens_per_second']:,.0f} tok/s{memory_note})"
    )
    return TrainResult(
        version=version,
        path=registry.root / config.adapter / version,
        train_loss=progress.losses,
        tokens_per_second=float(summary["tokens_per_second"]),
        peak_memory_gib=summary.get("peak_memory_gib"),  # type: ignore[arg-type]
        seconds=time.time() - started,
    )


def load_model(base_dir: Path, config: TrainConfig) -> tuple[Any, Any]:
    """The base model with fresh (or ``init_adapter``) LoRA weights, ready to train."""
    import torch

    cuda = torch.cuda.is_available()
    four_bit = cuda if config.load_in_4bit is None else config.load_in_4bit
    if config.backend == "unsloth":
        from unsloth import FastLanguageModel

        if cuda and config.inplace_swiglu:
            from training.unsloth_kernels import use_inplace_swiglu_backward

            use_inplace_swiglu_backward()
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(base_dir),
            max_seq_length=config.max_length,
            dtype=None if cuda else torch.bfloat16,
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
    elif config.backend == "peft":
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
        model = get_peft_model(model, lora)
    else:
        raise SystemExit(f"error: unknown --backend {config.backend!r} (use unsloth or peft)")
    if config.init_adapter is not None:
        _load_adapter_weights(model, config.init_adapter)
    return model, tokenizer


def _load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise SystemExit(
            f"error: adapter {adapter_dir} does not fit the model ({unexpected[:3]} ...)"
        )
    log(f"initialised LoRA weights from {adapter_dir}")


def tokenize_pairs(
    tokenizer: Any, pairs: list[Pair], config: TrainConfig
) -> tuple[list[dict[str, list[int]]], int]:
    examples, too_long = [], 0
    for pair in pairs:
        source, target = prepare_pair(config.contract, pair.msgid, pair.msgstr)
        input_ids, labels = encode_example(tokenizer, source, target, pair.msgctxt)
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
    import torch
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import Trainer
    from trl import SFTConfig, SFTTrainer

    lengths = [len(e["input_ids"]) for e in examples]
    sampler = TokenBudgetBatchSampler(
        lengths,
        config.batch_tokens,
        seed=config.seed,
        pad_multiple=config.pad_multiple,
        fixed_shapes=config.fixed_shapes,
    )
    log(
        f"batches: {len(sampler)} a epoch, {config.batch_tokens} padded tokens at most, "
        f"{sampler.padding_efficiency():.0%} of batch cells are real tokens"
        + (
            ", shapes " + " ".join(f"{rows}x{n}" for n, rows in sampler.shapes.items())
            if sampler.shapes
            else ""
        )
    )
    cuda = torch.cuda.is_available()
    padding_free = config.padding_free
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    log("batching: " + ("padding-free (one row per batch)" if padding_free else "padded rows"))
    args = SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=1,  # unused: batches come from the token-budget sampler
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        optim=config.optim or ("adamw_8bit" if cuda else "adamw_torch"),
        report_to=[],
        # Pairs over max_length were dropped in tokenize_pairs; TRL refuses a max_length
        # it cannot enforce in padding-free mode.
        max_length=None if padding_free else config.max_length,
        padding_free=padding_free,
        pad_to_multiple_of=None if padding_free else config.pad_multiple,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    progress = Progress(
        batches_per_epoch=len(sampler), padding_efficiency=sampler.padding_efficiency()
    )

    class TokenBudgetSFTTrainer(SFTTrainer):
        def get_train_dataloader(self) -> DataLoader:
            # TRL's own collator (padded, or flattened when padding-free, which Unsloth
            # extends with sequence lengths); we only count the real tokens it gets.
            def collate(batch: list[dict[str, list[int]]]) -> Any:
                progress.tokens_seen += sum(len(e["input_ids"]) for e in batch)
                out = self.data_collator(batch)
                shape = sampler.shape_for(max(len(e["input_ids"]) for e in batch))
                if shape is not None:
                    out = pad_to_shape(out, *shape, pad_id=pad_id)
                return out

            loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=collate)
            return self.accelerator.prepare(loader)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN202
            if not cuda:  # Unsloth's CPU trainer already chunks the loss and skips the metrics
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # The model's own loss (Unsloth's fused cross-entropy; transformers' for the
            # baseline). TRL's re-runs the LM head for entropy and token-accuracy logs and
            # reads them back every step (a GPU sync), and the 3B step is CPU-bound.
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    dataset = Dataset.from_list(examples)
    # Unsloth keeps padding-free batches only for a dataset it knows is cut to max_length
    # (else it turns them off). tokenize_pairs dropped the longer pairs; this is how
    # Unsloth 2026.10 is told so.
    dataset._unsloth_truncated_to = config.max_length
    trainer = TokenBudgetSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[progress.callback()],
    )
    if padding_free and not trainer.args.padding_free:
        log("warning: Unsloth turned padding-free batching off; batches run as padded rows")
    return trainer, progress


@contextlib.contextmanager
def attention_backends(config: TrainConfig) -> Iterator[None]:
    """Unsloth on CUDA trains without SDPA's cuDNN backend unless config.cudnn_attention;
    the global switch is put back afterwards. The peft baseline keeps torch's choice."""
    import torch

    if config.cudnn_attention or config.backend != "unsloth" or not torch.cuda.is_available():
        yield
        return
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


@dataclass
class Progress:
    """Loss, tokens/s and ETA on stderr; loss history for the report.

    tokens/s counts real (non-padding) tokens and leaves out the time up to the
    first log, where kernels compile and caches warm up."""

    batches_per_epoch: int = 0
    padding_efficiency: float = 1.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    started: float = 0.0
    tokens_seen: int = 0
    first_step: int = 0
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens) at each log

    def callback(self) -> Any:
        from transformers import TrainerCallback

        progress = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                progress.started = time.time()
                progress.first_step = state.global_step
                progress.tokens_seen = 0

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                if not logs or "loss" not in logs:
                    return
                step, total = state.global_step, max(state.max_steps, 1)
                progress.losses.append((step, float(logs["loss"])))
                progress.marks.append((time.time(), progress.tokens_seen))
                elapsed = time.time() - progress.started
                eta = elapsed / max(step - progress.first_step, 1) * (total - step)
                log(
                    f"step {step}/{total}  loss {logs['loss']:.4f}  "
                    f"{progress.tokens_per_second():,.0f} tok/s{progress.latest()}  "
                    f"ETA {_duration(eta)}"
                )

        return _Callback()

    def tokens_per_second(self) -> float:
        if len(self.marks) >= 2:
            (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        else:
            (t0, n0), (t1, n1) = (self.started, 0), (time.time(), self.tokens_seen)
        return (n1 - n0) / max(t1 - t0, 1e-9)

    def latest(self) -> str:
        """The rate since the previous log and, on CUDA, the peak memory so far: what a
        run cut short still tells."""
        import torch

        out = ""
        if len(self.marks) >= 2:
            (t0, n0), (t1, n1) = self.marks[-2], self.marks[-1]
            out += f" (now {(n1 - n0) / max(t1 - t0, 1e-9):,.0f})"
        if torch.cuda.is_available():
            out += f"  peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        return out

    def summary(self) -> dict[str, float]:
        import torch

        out: dict[str, float] = {"train_seconds": round(time.time() - self.started, 1)}
        if self.losses:
            out["first_loss"] = round(self.losses[0][1], 4)
            out["final_loss"] = round(self.losses[-1][1], 4)
        out["tokens_per_second"] = round(self.tokens_per_second(), 1)
        if len(self.marks) >= 4:  # the second half alone: past compilation for new shapes
            (t0, n0), (t1, n1) = self.marks[len(self.marks) // 2], self.marks[-1]
            out["tokens_per_second_second_half"] = round((n1 - n0) / max(t1 - t0, 1e-9), 1)
        out["train_tokens"] = float(self.tokens_seen)
        if torch.cuda.is_available():
            out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        return out


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


def _settings(config: TrainConfig) -> dict[str, object]:
    skip = {"data", "registry", "contract", "command", "parent", "init_adapter", "resume"}
    out = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k not in skip
    }
    out["init_adapter"] = str(config.init_adapter) if config.init_adapter else None
    return out


def _run_id(fingerprint: str, config: TrainConfig) -> str:
    return _hash(fingerprint + json.dumps(_settings(config), sort_keys=True, default=str))[:12]


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


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )
