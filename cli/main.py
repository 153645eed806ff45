"""`polingo`: data, models, train, eval, serve, retrain, review, adapters.

Each subcommand is a thin shell over a plain function that tests call directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import typing
from pathlib import Path

from core import defaults
from core.defaults import ENGINES
from core.prompt import CONTRACT_PRESETS, MARKUP_RETRIES
from core.vllm_env import quiet_if_inherited
from training.config import TrainConfig

quiet_if_inherited()  # vLLM's engine processes import the main module again (spawn)

DEFAULT_REGISTRY = os.environ.get("POLINGO_REGISTRY", str(defaults.DEFAULT_REGISTRY))
DEFAULT_ADAPTER = os.environ.get("POLINGO_ADAPTER", defaults.DEFAULT_ADAPTER)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polingo",
        description="Train, evaluate and serve translation adapters for gettext catalogs.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the warnings and logs of torch, transformers, Unsloth and vLLM too",
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

    _add_eval_options(sub.add_parser("eval", help="translate the held-out split and score it"))

    serve = sub.add_parser("serve", help="run the translation service")
    from service.serve import add_arguments

    add_arguments(serve)

    re_ = sub.add_parser("retrain", help="train a new version when new translations land")
    from training.retrain import add_arguments as add_retrain_arguments

    add_retrain_arguments(re_)

    rv = sub.add_parser("review", help="a local web page to accept, fix or reject drafts")
    from review.cli import add_arguments as add_review_arguments

    add_review_arguments(rv)

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


def _add_eval_options(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--adapter", default=DEFAULT_ADAPTER, help="NAME[@VERSION] (default: current)")
    ev.add_argument("--data", type=Path, help=".po tree whose held-out split is scored")
    ev.add_argument(
        "--review-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="report how often translators kept the drafts unchanged (kept_share) from "
        "polingo review's log; without --data, only that",
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


def _add_train_options(p: argparse.ArgumentParser) -> None:
    _add_config_options(p, TrainConfig, {"adapter": DEFAULT_ADAPTER, "registry": DEFAULT_REGISTRY})
    p.add_argument(
        "--eval",
        dest="eval_limit",
        type=int,
        default=None,
        metavar="N",
        help="after training, score N held-out pairs (the service's engine) into the manifest",
    )
    p.add_argument("--promote", action="store_true", help="make the new version current")
    p.add_argument(
        "--no-protect-markup",
        dest="contract",
        action="store_const",
        const=CONTRACT_PRESETS["raw"],
        help="train on raw markup instead of numbered placeholders (= --contract raw)",
    )


def _add_config_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    defaults: dict[str, object] | None = None,
) -> None:
    """One option per field of ``cls`` (a config dataclass), its help from the field's
    metadata; a nested dataclass field becomes an argument group of its own."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("internal"):
            continue
        if meta.get("group"):
            group = p.add_argument_group(meta["group"], (hints[f.name].__doc__ or "").strip())
            _add_config_options(group, hints[f.name])
            continue
        p.add_argument(
            "--" + meta.get("flag", f.name.replace("_", "-")),
            **_option(f, hints[f.name], (defaults or {}).get(f.name)),
        )


def _option(f: dataclasses.Field, hint: object, default: object = None) -> dict[str, object]:
    meta = f.metadata
    options: dict[str, object] = {"dest": f.name, "help": meta["help"].replace("%", "%%")}
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        options["required"] = True
    elif default is None:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    custom = meta.get("argparse", {})
    if "action" not in custom:
        options["action" if kind is bool else "type"] = (
            argparse.BooleanOptionalAction if kind is bool else kind
        )
        if default is not None and "default" not in options["help"]:
            options["help"] += " (default: %(default)s)"
    if "choices" in meta:
        options["choices"] = meta["choices"]
    options.update(custom)
    if not options.get("required"):
        options["default"] = kind(default) if kind is Path and default is not None else default
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that `polingo train`'s options give (_add_config_options)."""

    def values(cls: type) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("group"):
                out[f.name] = f.default_factory(**values(f.default_factory))  # type: ignore[misc]
            elif not f.metadata.get("internal"):
                out[f.name] = getattr(args, f.name)
        return out

    return TrainConfig(**values(TrainConfig), command="polingo " + shlex.join(sys.argv[1:]))  # type: ignore[arg-type]


def _train(args: argparse.Namespace) -> int:
    """`polingo train`: bad settings or data raise ValueError, which main reports."""
    from core.base_models import BaseModelError
    from core.registry import Registry
    from training.data import CatalogError
    from training.train import train

    try:
        result = train(config_from_args(args))
    except (BaseModelError, CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":  # serve sets its own from --log-level
        from core.vllm_env import quiet_third_party

        quiet_third_party(verbose=args.verbose)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from core.catalogs import CatalogError
    from core.registry import RegistryError

    try:
        if args.command == "data":
            from training.data import load_corpus, stats_lines

            corpus = load_corpus(args.dir, strict=args.strict)
            print("\n".join(stats_lines(corpus, args.heldout_percent)))
            return 1 if corpus.problems else 0
        if args.command == "models":
            return _models(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "serve":
            from service.serve import run

            return run(args)
        if args.command == "retrain":
            from training.retrain import run as run_retrain

            return run_retrain(args)
        if args.command == "adapters":
            return _adapters(args)
        if args.command == "review":
            from review.cli import run as run_review

            return run_review(args)
    except (RegistryError, CatalogError, ValueError) as exc:  # bad input: settings, data, refs
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _eval(args: argparse.Namespace) -> int:
    from core.registry import Registry
    from training.evaluate import evaluate, review_metrics

    if args.data is None and args.review_log is None:
        print("error: polingo eval needs --data, --review-log or both", file=sys.stderr)
        return 2
    if args.review_log is not None:
        for key, value in review_metrics(args.review_log).items():
            print(f"{key:18} {value:10.4g}")
    if args.data is None:
        return 0
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


def _models(args: argparse.Namespace) -> int:
    from core.base_models import BaseModelError, list_aliases, resolve_base_model

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
    from core.registry import Registry

    registry = Registry(args.registry)
    if args.action == "list":
        names = registry.names()
        if not names:
            print(f"no adapters in {registry.root}")
        bad = 0
        for name in names:
            current = registry.current(name)
            for version in registry.versions(name):
                try:
                    m = registry.manifest(f"{name}@{version}")
                except (OSError, ValueError) as exc:  # one bad manifest: list the rest
                    print(f"! {name}@{version}  unreadable manifest: {exc}", file=sys.stderr)
                    bad += 1
                    continue
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
        return 1 if bad else 0
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
