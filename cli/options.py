"""Options generated from typed fields, so that a setting is stated once: the fields of a
config dataclass (help in the field's metadata, as ``TrainConfig``) or of
``core.settings.Settings`` (help from the field's docstring, the flag from its variable)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path

from core.defaults import DEFAULT_ADAPTER, DEFAULT_REGISTRY
from core.settings import Environment, env_name

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def add_config_options(p: Parser, cls: type, defaults: dict[str, object] | None = None) -> None:
    """One option per field of ``cls`` (a config dataclass), its help from the field's
    metadata; a nested dataclass field becomes an argument group of its own."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("internal"):
            continue
        if meta.get("group"):
            group = p.add_argument_group(meta["group"], (hints[f.name].__doc__ or "").strip())
            add_config_options(group, hints[f.name])
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
    kind = _kind(hint)
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
        path = kind is Path and isinstance(default, str)  # not a tuple of paths (nargs)
        options["default"] = Path(default) if path else default
    return options


def config_values(args: argparse.Namespace, cls: type) -> dict[str, object]:
    """The keyword arguments of ``cls`` that add_config_options' options gave."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            out[f.name] = f.default_factory(**config_values(args, f.default_factory))  # type: ignore[misc]
        elif not f.metadata.get("internal"):
            out[f.name] = getattr(args, f.name)
    return out


def _kind(hint: object) -> object:
    """``int`` of ``int | None``; the type itself otherwise."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint
    return next(t for t in typing.get_args(hint) if t is not type(None))


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings under the fields of a dataclass (its source), whitespace folded."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for field, doc in zip(body, body[1:], strict=False):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs


def settings_flag(field: str) -> str:
    """The option of a Settings field: its variable's name, e.g. POLINGO_WATCH_INTERVAL ->
    --watch-interval."""
    return "--" + env_name(field).split("_", 1)[1].lower().replace("_", "-")


def add_settings_options(p: Parser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """One option per field of ``cls`` (core.settings.Settings; ``only``: these fields);
    none has a default here, so that an option left out keeps the environment's value
    (or the field's default)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        kind = _kind(hints[f.name])
        help_ = docs[f.name].replace("%", "%%")
        if isinstance(f.default, bool):
            help_ += f" Default: {'on' if f.default else 'off'}."
        elif f.default is not None and f.default is not dataclasses.MISSING:
            help_ += f" Default: {f.default}."
        flag = settings_flag(f.name)
        options: dict[str, object] = {"dest": f.name, "default": None, "help": help_}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        else:
            options.update(type=kind, metavar=flag[2:].upper().replace("-", "_"))
        p.add_argument(flag, **options)


def registry_default(env: Environment) -> Path:
    """--registry's default: POLINGO_REGISTRY, else var/registry."""
    return env.registry or DEFAULT_REGISTRY


def adapter_default(env: Environment) -> str:
    """--adapter's default: POLINGO_ADAPTER, else the project's adapter name."""
    return env.adapter or DEFAULT_ADAPTER


def add_reload_options(p: Parser, env: Environment) -> None:
    """--service-url and --api-key of the commands that tell a running service to reload."""
    p.add_argument(
        "--service-url",
        default=env.service_url,
        help="also tell this running service to reload (POLINGO_SERVICE_URL)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="the service's reload key (default: POLINGO_API_KEY or POLINGO_API_KEY_FILE)",
    )


def notify_service(url: str, api_key: str | None) -> int:
    """Ask a running service to load the registry's current versions: 0, or 1 (printed)."""
    from clients.reload import ReloadError, reload_service

    try:
        answer = reload_service(url, api_key)
    except ReloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    refused = f", refused: {answer.errors}" if answer.errors else ""
    print(f"service reloaded: {answer.loaded}{refused}")
    return 0


def reload_key(args: argparse.Namespace) -> str | None:
    """--api-key, else the environment's key (POLINGO_API_KEY, POLINGO_API_KEY_FILE)."""
    return args.api_key or args.env.key()
