"""`polingo`: data, models, train, eval, serve, retrain, adapters.

Each subcommand is a thin shell over a plain function that tests call directly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from service.contract import MARKUP_RETRIES, PromptContract
from service.settings import ENGINES

DEFAULT_REGISTRY = os.environ.get("POLINGO_REGISTRY", "var/registry")
DEFAULT_ADAPTER = os.environ.get("POLINGO_ADAPTER", "zh-tw")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polingo",
        description="Train, evaluate and serve translation adapters for gettext catalogs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect training data").add_subparsers(
        dest="action", required=True
    )
    stats = data.add_parser("stats", help="pairs, duplicates, split and problems of a .po tree")
    stats.add_argument("dir", type=Path, help="a .po file or a folder of them")
    stats.add_argument("--strict", action="store_true", help="fail on the first unreadable catalog")
    stats.add_argument("--heldout-percent", type=float, default=3.0)

    models = sub.add_parser("models", help="base models").add_subparsers(
        dest="action", required=True
    )
    models.add_parser("list", help="the packaged offline aliases")
    prepare = models.add_parser("prepare", help="convert a packaged alias (or check a model) once")
    prepare.add_argument("name", nargs="?", default="gemma3-270m")

    tr = sub.add_parser("train", help="fine-tune a LoRA adapter on a .po tree")
    _add_train_options(tr)

    ev = sub.add_parser("eval", help="translate the held-out split and score it")
    ev.add_argument("--adapter", default=DEFAULT_ADAPTER, help="NAME[@VERSION] (default: current)")
    ev.add_argument(
        "--data", type=Path, required=True, help=".po tree whose held-out split is scored"
    )
    ev.add_argument("--registry", type=Path, default=Path(DEFAULT_REGISTRY))
    ev.add_argument("--limit", type=int, default=None, help="score only the first N held-out pairs")
    ev.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="the service's engine that translates (POLINGO_ENGINE, default vllm)",
    )
    ev.add_argument(
        "--markup-retries",
        type=int,
        default=None,
        metavar="N",
        help="candidates sampled when a greedy translation loses markup; 0: greedy only "
        f"(POLINGO_MARKUP_RETRIES, default {MARKUP_RETRIES})",
    )

    serve = sub.add_parser("serve", help="run the translation service")
    from service.serve import add_arguments

    add_arguments(serve)

    re_ = sub.add_parser("retrain", help="train a new version when new translations land")
    from training.retrain import add_arguments as add_retrain_arguments

    add_retrain_arguments(re_)

    adapters = sub.add_parser("adapters", help="list, promote or roll back adapter versions")
    adapters.add_argument("--registry", type=Path, default=Path(DEFAULT_REGISTRY))
    act = adapters.add_subparsers(dest="action", required=True)
    act.add_parser("list", help="every version, its metrics, and which is current")
    promote = act.add_parser("promote", help="make NAME@VERSION the current version")
    promote.add_argument("ref")
    rollback = act.add_parser("rollback", help="go back to the previously current version")
    rollback.add_argument("name", nargs="?", default=DEFAULT_ADAPTER)
    for p in (promote, rollback):
        p.add_argument(
            "--service-url",
            default=os.environ.get("POLINGO_SERVICE_URL"),
            help="also tell this running service to reload",
        )
        p.add_argument("--api-key", default=os.environ.get("POLINGO_API_KEY"))
    return parser


def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = _defaults()
    p.add_argument("--data", type=Path, required=True, help=".po file or folder (recursive)")
    p.add_argument(
        "--base-model",
        default=d.base_model,
        help="packaged alias (gemma3-270m, smollm2-135m), local folder, or hub id "
        "(production: unsloth/Llama-3.2-3B-Instruct)",
    )
    p.add_argument("--adapter", default=DEFAULT_ADAPTER, help="adapter name in the registry")
    p.add_argument("--registry", type=Path, default=Path(DEFAULT_REGISTRY))
    p.add_argument("--rank", type=int, default=d.rank)
    p.add_argument("--alpha", type=int, default=d.alpha)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument(
        "--max-steps", type=int, default=d.max_steps, help="stop after N steps (smoke runs)"
    )
    p.add_argument(
        "--max-length", type=int, default=d.max_length, help="tokens; longer pairs dropped"
    )
    p.add_argument(
        "--batch-tokens", type=int, default=d.batch_tokens, help="padded tokens per batch"
    )
    p.add_argument(
        "--pad-multiple",
        type=int,
        default=d.pad_multiple,
        help="round padded batch lengths up to this (default: no rounding)",
    )
    p.add_argument(
        "--fixed-shapes",
        type=int,
        default=d.fixed_shapes,
        metavar="K",
        help="give every batch one of K (rows, length) shapes, for CUDA graphs "
        "(UNSLOTH_BLOCK_CUDAGRAPHS=1 keeps 8; default 0: off)",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=d.cuda_graphs,
        help="replay Unsloth's compiled blocks as CUDA graphs over fixed batch shapes: "
        "faster when the step is CPU-bound, for about 3x the GPU memory (Unsloth, CUDA)",
    )
    p.add_argument(
        "--cudnn-attention",
        action=argparse.BooleanOptionalAction,
        default=d.cudnn_attention,
        help="let attention run on cuDNN in Unsloth's training blocks; off (the default), "
        "it runs on flash or memory-efficient kernels, faster and leaner on the H200 "
        "(Unsloth, CUDA)",
    )
    p.add_argument(
        "--inplace-swiglu",
        action=argparse.BooleanOptionalAction,
        default=d.inplace_swiglu,
        help="run the LoRA MLP's SwiGLU backward in place inside Unsloth's compiled "
        "blocks, as Unsloth does eagerly: less GPU memory a step (Unsloth, CUDA; "
        "default on)",
    )
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument(
        "--optim",
        default=None,
        help="transformers optimizer name (default: adamw_8bit on CUDA, adamw_torch on CPU)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-pairs", type=int, default=None, help="train on a deterministic subset")
    p.add_argument("--heldout-percent", type=float, default=d.heldout_percent)
    p.add_argument("--backend", choices=["unsloth", "peft"], default=d.backend)
    p.add_argument(
        "--4bit",
        dest="load_in_4bit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="QLoRA nf4 (default: on CUDA only)",
    )
    p.add_argument(
        "--padding-free",
        action=argparse.BooleanOptionalAction,
        default=d.padding_free,
        help="run each batch as one row without padding (Unsloth only; on an H200 without "
        "flash-attn it was slower than padded rows)",
    )
    p.add_argument(
        "--no-protect-markup",
        action="store_true",
        help="train on raw markup instead of numbered placeholders",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint of this run"
    )
    p.add_argument("--save-steps", type=int, default=d.save_steps, help="checkpoint every N steps")
    p.add_argument("--logging-steps", type=int, default=d.logging_steps)
    p.add_argument(
        "--eval",
        dest="eval_limit",
        type=int,
        default=None,
        metavar="N",
        help="after training, score N held-out pairs (the service's engine) into the manifest",
    )
    p.add_argument("--promote", action="store_true", help="make the new version current")


def _defaults():  # noqa: ANN202
    from training.train import TrainConfig

    return TrainConfig(data=Path("."))


def config_from_args(args: argparse.Namespace) -> object:
    from training.train import TrainConfig

    return TrainConfig(
        data=args.data,
        adapter=args.adapter,
        registry=args.registry,
        base_model=args.base_model,
        rank=args.rank,
        alpha=args.alpha,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        pad_multiple=args.pad_multiple,
        fixed_shapes=args.fixed_shapes,
        cuda_graphs=args.cuda_graphs,
        cudnn_attention=args.cudnn_attention,
        inplace_swiglu=args.inplace_swiglu,
        grad_accum=args.grad_accum,
        optim=args.optim,
        seed=args.seed,
        max_pairs=args.max_pairs,
        heldout_percent=args.heldout_percent,
        backend=args.backend,
        load_in_4bit=args.load_in_4bit,
        padding_free=args.padding_free,
        resume=args.resume,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
        contract=PromptContract(protect_markup=not args.no_protect_markup),
        command="polingo " + shlex.join(sys.argv[1:]),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from service.registry import Registry, RegistryError

    try:
        if args.command == "data":
            from training.data import CatalogError, load_corpus, stats_lines

            try:
                corpus = load_corpus(args.dir, strict=args.strict)
            except CatalogError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print("\n".join(stats_lines(corpus, args.heldout_percent)))
            return 1 if corpus.problems else 0
        if args.command == "models":
            return _models(args)
        if args.command == "train":
            from training.train import train

            result = train(config_from_args(args))  # type: ignore[arg-type]
            registry = Registry(args.registry)
            ref = f"{args.adapter}@{result.version}"
            if args.eval_limit:
                from training.evaluate import evaluate

                ev = evaluate(registry, ref, args.data, limit=args.eval_limit)
                print(f"{ref}: {ev.metrics}  (copy source: {ev.baseline})")
            if args.promote or registry.current(args.adapter) is None:
                registry.promote(
                    ref, reason="first version" if not args.promote else "polingo train --promote"
                )
            print(ref)
            return 0
        if args.command == "eval":
            from training.evaluate import evaluate

            ev = evaluate(
                Registry(args.registry),
                args.adapter,
                args.data,
                limit=args.limit,
                engine=args.engine,
                markup_retries=args.markup_retries,
            )
            for key, value in ev.metrics.items():
                baseline = ev.baseline.get(key)
                print(
                    f"{key:18} {value:10.4g}"
                    + (f"   copy-source {baseline:10.4g}" if baseline is not None else "")
                )
            return 0
        if args.command == "serve":
            from service.serve import run

            return run(args)
        if args.command == "retrain":
            from training.retrain import run as run_retrain

            return run_retrain(args)
        if args.command == "adapters":
            return _adapters(args)
    except (RegistryError, ValueError) as exc:  # bad input: settings, data, references
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _models(args: argparse.Namespace) -> int:
    from service.base_models import BaseModelError, list_aliases, resolve_base_model

    if args.action == "list":
        for alias in list_aliases():
            print(alias)
        return 0
    try:
        print(resolve_base_model(args.name))
    except BaseModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _adapters(args: argparse.Namespace) -> int:
    from service.registry import Registry

    registry = Registry(args.registry)
    if args.action == "list":
        names = registry.names()
        if not names:
            print(f"no adapters in {registry.root}")
        for name in names:
            current = registry.current(name)
            for version in registry.versions(name):
                m = registry.manifest(f"{name}@{version}")
                mark = "*" if version == current else " "
                metrics = "  ".join(
                    f"{k}={v:g}"
                    for k, v in m.metrics.items()
                    if k in ("chrf", "bleu_zh", "markup_kept")
                )
                print(
                    f"{mark} {name}@{version}  base={m.base_model}  "
                    f"parent={m.parent or '-'}  {metrics}  {m.created_at}"
                )
        return 0
    if args.action == "promote":
        name, version = registry.resolve(args.ref)
        registry.promote(f"{name}@{version}", reason="polingo adapters promote")
        print(f"{name}@{version} is current")
    else:
        name = args.name
        version = registry.rollback(name)
        print(f"{name}@{version} is current again")
    if args.service_url:
        from training.retrain import notify_service

        return notify_service(args.service_url, args.api_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
