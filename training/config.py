"""What `polingo train` can be told: ``TrainConfig``, its ``Experimental`` group, and
``validate``.

Each field's metadata carries its help text; `polingo train`'s options are generated
from these fields (cli/main.py), so a knob is stated here once. This module imports
no machine-learning package at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base_models import DEFAULT_OFFLINE_MODEL
from core.defaults import DEFAULT_ADAPTER, DEFAULT_REGISTRY
from core.prompt import CONTRACT_PRESETS, PromptContract, contract_preset, default_contract

BACKENDS = ("unsloth", "peft")
# Unsloth's default cap on the batch shapes it replays as CUDA graphs (its
# UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES); past it, it stops replaying the layer kind.
DEFAULT_CUDA_GRAPH_SHAPES = 8


def contract_option(spec: str) -> PromptContract:
    """--contract NAME[:SWITCH=VALUE,...] (core.prompt.contract_preset) for argparse."""
    try:
        return contract_preset(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class ConfigError(ValueError):
    """A setting that cannot train; ``field`` names it, the message names its option."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def knob(default: Any = dataclasses.MISSING, help: str = "", **cli: Any) -> Any:  # noqa: A002
    """A field with its help text (a class or function as ``default`` is its factory). ``cli`` holds
    argparse settings for its option: ``flag`` (name without dashes, if not the
    field's), ``choices``, or ``argparse`` (keyword arguments used as they are);
    ``internal=True`` keeps it off the CLI;
    ``group`` (a title) makes a nested dataclass an argument group."""
    metadata = {"help": help, **cli}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Experimental:
    """Switches that only the benchmarks set (bench/, docs/benchmarks.md)."""

    backend: str = knob(
        "unsloth",
        "unsloth (polingo's path) or peft: plain transformers + PEFT + bitsandbytes, "
        "the benchmarks' baseline",
        choices=BACKENDS,
    )
    fixed_shapes: int = knob(
        0,
        "give every batch one of K (rows, length) shapes, for CUDA graphs, which replay "
        "only shapes they recorded (0: off)",
        argparse={"metavar": "K"},
    )
    # Unsloth's CUDA attention keeps packed sequences apart only in one-row batches
    # (it reads their lengths from the position ids when the batch has one row).
    packing: bool = knob(
        False,
        "pack whole pairs into one row of --batch-tokens tokens a batch, each pair's "
        "attention kept to itself: one batch shape, no padding between pairs",
    )
    flash_varlen: bool = knob(
        True,
        "with --packing: each layer's attention over the packed pairs in one flash varlen "
        "call, not one SDPA call per run of equal-length pairs (Unsloth, CUDA, torch < 2.12)",
    )
    cuda_graphs: bool = knob(
        False,
        "replay Unsloth's compiled blocks as CUDA graphs over fixed batch shapes "
        f"(--fixed-shapes, else Unsloth's cap, {DEFAULT_CUDA_GRAPH_SHAPES}): 1.6x faster on "
        "the H200 for about 3x the GPU memory, not re-measured at the current defaults "
        "(Unsloth, CUDA)",
    )
    # Unsloth's traced backward allocates three MLP-width tensors inside its compiled
    # blocks: training/unsloth_kernels.py, docs/benchmarks.md.
    inplace_swiglu: bool = knob(
        True,
        "run the LoRA MLP's SwiGLU backward in place inside Unsloth's compiled blocks: "
        "less GPU memory a step, about 8% slower (Unsloth, CUDA)",
    )
    stats_file: Path | None = knob(
        None,
        "also write the run's statistics (batches, padding, rates over the second half, "
        "memory) to this JSON file",
        argparse={"metavar": "PATH"},
    )


@dataclass
class TrainConfig:
    data: Path = knob(help=".po file or folder (recursive)")
    adapter: str = knob(DEFAULT_ADAPTER, "adapter name in the registry")
    registry: Path = knob(DEFAULT_REGISTRY, "adapter registry folder")
    base_model: str = knob(
        DEFAULT_OFFLINE_MODEL,
        "packaged alias (gemma3-270m, smollm2-135m), local folder, or hub id "
        "(production: unsloth/Llama-3.2-3B-Instruct)",
    )
    rank: int = knob(16, "LoRA rank: higher learns more, costs memory and serving speed")
    alpha: int = knob(32, "LoRA alpha (updates are scaled by alpha / rank)")
    dropout: float = knob(0.0, "LoRA dropout")
    learning_rate: float = knob(2e-4, "peak learning rate (cosine schedule)")
    epochs: float = knob(1.0, "passes over the training pairs")
    max_steps: int = knob(-1, "stop after N steps (smoke runs); -1: run the epochs")
    max_length: int = knob(512, "prompt + translation tokens; longer pairs are dropped and counted")
    # 3B QLoRA on the H200 at the defaults: 8192 peaks at 3.31 GiB and runs faster than
    # fewer cells, since the step is bound by kernel launches (docs/benchmarks.md).
    batch_tokens: int = knob(8192, "padded tokens per batch (rows x longest row)")
    grad_accum: int = knob(1, "batches per optimizer step")
    optim: str | None = knob(
        None, "transformers optimizer name (default: adamw_8bit on CUDA, adamw_torch on CPU)"
    )
    warmup_ratio: float = knob(0.03, "share of the steps that warm the learning rate up")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    seed: int = knob(0, "seed of the LoRA initialisation and of the batch order")
    heldout_percent: float = knob(
        3.0, "percent of the msgids held out for evaluation (a stable hash of each msgid)"
    )
    document_percent: float = knob(
        7.0,
        "percent of the catalogs held out whole for evaluation, the document split (a "
        "stable hash of each path; 7 is about 5% of the pairs); 0: none",
    )
    max_pairs: int | None = knob(None, "train on a deterministic subset of N pairs")
    extra_data: tuple[Path, ...] = knob(
        (),
        "extra training text (issue 42): other .po trees (an older snapshot) or update "
        "triples (.jsonl), less every text of either held-out split (a held-out catalog "
        "by its path) and every key the data translates; trained on, not put in the "
        "memory (default: none)",
        argparse={"nargs": "+", "type": Path, "metavar": "PATH"},
    )
    load_in_4bit: bool | None = knob(None, "QLoRA nf4 (default: on CUDA only)", flag="4bit")
    gradient_checkpointing: bool = knob(
        True, "recompute activations in the backward (Unsloth offloads them): less memory"
    )
    resume: bool = knob(False, "continue from the last checkpoint of this run")
    save_steps: int = knob(200, "checkpoint every N steps")
    logging_steps: int = knob(10, "log loss, tokens/s and ETA every N steps")
    contract: PromptContract = knob(
        default_contract,
        "the prompt contract: v1 (placeholders for whole markup items, zh-tw@v1's), v2 "
        "(link labels translated, memory examples and glossary terms in the prompt, "
        "post-editing) or raw (no placeholders); NAME:SWITCH=VALUE,... changes switches of "
        "the preset, e.g. v2:examples=0,terms=off (default: v1)",
        argparse={
            "type": contract_option,
            "metavar": "{" + ",".join(CONTRACT_PRESETS) + "}[:SWITCH=VALUE,...]",
        },
    )
    terms: Path | None = knob(
        None,
        "more terms beside the corpus's glossary.po, shown in the prompts of training and "
        'serving: a .jsonl of {"source": ..., "target": ...} lines (an adapter\'s '
        "terms.jsonl; `polingo data terms TREE -o FILE` mines one from the training pairs); the "
        "glossary's target wins where both name a term. Needs a contract with terms (v2)",
        argparse={"metavar": "PATH"},
    )
    updates: Path | None = knob(
        None,
        "also train the update mode on these update triples (a .jsonl file, or a folder of "
        "them; `polingo data updates OLD NEW` mines them): turns the contract's update "
        "switch on (contract version 3)",
        argparse={"metavar": "PATH"},
    )
    parent: str | None = knob(
        None, "NAME@VERSION this version continues from (polingo retrain)", internal=True
    )
    init_adapter: Path | None = knob(
        None, "start from these LoRA weights instead of zeros (polingo retrain)", internal=True
    )
    command: str = knob("", "the command line, recorded in the manifest", internal=True)
    experimental: Experimental = knob(
        Experimental, "benchmark-only switches", group="experimental (benchmarks)"
    )

    def __post_init__(self) -> None:
        # Settings read back from a manifest (polingo retrain) hold plain values.
        if isinstance(self.experimental, Mapping):
            self.experimental = experimental_from(self.experimental)
        for name in ("data", "registry"):
            setattr(self, name, Path(getattr(self, name)))
        if self.init_adapter is not None:
            self.init_adapter = Path(self.init_adapter)
        self.extra_data = tuple(Path(p) for p in self.extra_data)
        if self.terms is not None:
            self.terms = Path(self.terms)
        if self.updates is not None:
            self.updates = Path(self.updates)
            # update triples train the update mode: the contract must say so
            self.contract = self.contract.with_update()


def experimental_from(settings: Mapping[str, Any]) -> Experimental:
    """An ``Experimental`` from recorded settings; keys it no longer has are ignored."""
    known = {f.name for f in dataclasses.fields(Experimental)}
    return Experimental(**{k: v for k, v in settings.items() if k in known})


def flag(name: str, cls: type = TrainConfig) -> str:
    """The command-line option of a field: ``--max-length``, ``--4bit``."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return "--" + meta.get("flag", name.replace("_", "-"))


def recorded_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a manifest records (and a run's checkpoint folder is named by):
    what shapes the weights, not where inputs and outputs lie."""
    skip = {"data", "registry", "contract", "command", "parent", "resume"}
    out = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(config).items()
        if k not in skip
    }
    out["extra_data"] = [str(p) for p in config.extra_data]
    out["experimental"].pop("stats_file", None)
    return out


def cuda_graph_shape_cap() -> int:
    return int(os.environ.get("UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES", DEFAULT_CUDA_GRAPH_SHAPES))


def validate(config: TrainConfig) -> None:
    """Raise ConfigError for the first setting that cannot train, before any work."""
    _check_numbers(config)
    _check_experimental(config.experimental)
    for path in config.extra_data:
        if not path.exists():
            raise ConfigError("extra_data", f"--extra-data {path}: no such file or folder")
    if config.updates is not None and not config.updates.exists():
        raise ConfigError("updates", f"--updates {config.updates}: no such file or folder")
    if config.terms is not None:
        _check_terms(config)
    if config.optim is not None:
        from transformers.training_args import OptimizerNames

        known = {o.value for o in OptimizerNames}
        if config.optim not in known:
            raise ConfigError(
                "optim",
                f"--optim {config.optim!r} is not an optimizer transformers knows (for example "
                "adamw_8bit, adamw_torch_fused, adamw_torch; all: "
                + ", ".join(sorted(known))
                + ")",
            )


def _check_terms(config: TrainConfig) -> None:
    from core.terms import read_terms

    assert config.terms is not None
    if not config.contract.terms:
        raise ConfigError(
            "terms", "--terms: the contract shows no terms in its prompts (give --contract v2)"
        )
    if not config.terms.is_file():
        raise ConfigError("terms", f"--terms {config.terms}: no such file")
    try:
        read_terms(config.terms)
    except ValueError as exc:
        raise ConfigError("terms", f"--terms {exc}") from None


def _check_numbers(c: TrainConfig) -> None:
    rules: list[tuple[str, bool, str]] = [
        ("rank", c.rank >= 1, "give 1 or more"),
        ("alpha", c.alpha >= 1, "give 1 or more"),
        ("dropout", 0.0 <= c.dropout < 1.0, "give a share from 0 up to (not including) 1"),
        ("learning_rate", c.learning_rate > 0, "give a positive rate"),
        ("epochs", c.epochs > 0, "give a positive number of passes"),
        ("max_steps", c.max_steps == -1 or c.max_steps >= 1, "give -1 (the epochs) or 1 or more"),
        ("max_length", c.max_length >= 1, "give 1 or more tokens"),
        ("grad_accum", c.grad_accum >= 1, "give 1 or more"),
        (
            "warmup_ratio",
            0.0 <= c.warmup_ratio < 1.0,
            "give a share from 0 up to (not including) 1",
        ),
        ("weight_decay", c.weight_decay >= 0, "give 0 or more"),
        (
            "heldout_percent",
            0.0 <= c.heldout_percent < 100.0,
            "give a percent from 0 up to (not including) 100",
        ),
        (
            "document_percent",
            0.0 <= c.document_percent < 100.0,
            "give a percent from 0 up to (not including) 100",
        ),
        ("max_pairs", c.max_pairs is None or c.max_pairs >= 1, "give 1 or more"),
        ("save_steps", c.save_steps >= 1, "give 1 or more"),
        ("logging_steps", c.logging_steps >= 1, "give 1 or more"),
    ]
    for name, ok, hint in rules:
        if not ok:
            raise ConfigError(name, f"{flag(name)} {getattr(c, name)}: {hint}")
    if c.experimental.packing and c.experimental.fixed_shapes:
        raise ConfigError("packing", "--packing already gives one shape: drop --fixed-shapes")
    if c.batch_tokens < c.max_length:
        raise ConfigError(
            "batch_tokens",
            f"--batch-tokens {c.batch_tokens} is less than --max-length {c.max_length}: "
            "a pair of the longest allowed length would fit in no batch",
        )


def _check_experimental(x: Experimental) -> None:
    if x.backend not in BACKENDS:
        raise ConfigError("backend", f"--backend {x.backend!r}: use {' or '.join(BACKENDS)}")
    if x.fixed_shapes < 0:
        raise ConfigError("fixed_shapes", f"--fixed-shapes {x.fixed_shapes}: give 0 (off) or more")
    if not x.cuda_graphs:
        return
    cap = cuda_graph_shape_cap()
    if x.fixed_shapes > cap:
        raise ConfigError(
            "fixed_shapes",
            f"--fixed-shapes {x.fixed_shapes} is more shapes than Unsloth replays as CUDA "
            f"graphs ({cap}, UNSLOTH_BLOCK_CUDAGRAPHS_MAX_SHAPES)",
        )
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("cuda_graphs", "--cuda-graphs needs a CUDA GPU")
    if x.backend != "unsloth":
        raise ConfigError("cuda_graphs", "--cuda-graphs needs --backend unsloth")
    if "unsloth.models._block_compile" in sys.modules:
        # Unsloth reads its switch once, when it first compiles blocks
        raise ConfigError(
            "cuda_graphs", "--cuda-graphs must be set before Unsloth compiled a model"
        )
