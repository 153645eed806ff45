"""The layout's rules that code review alone would let slip: POLINGO_* read in one module,
`polingo serve`'s options generated from the Settings fields, one subcommand a module."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("core", "service", "training", "clients", "review", "cli")


def _sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def test_polingo_variables_are_named_only_in_core_settings() -> None:
    """A read needs the variable's bare name as a string; help texts and messages that
    mention a variable inside a sentence are fine."""
    offenders = []
    for path in _sources(*PRODUCT, "deploy"):
        if path == ROOT / "core" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("POLINGO_")
                and node.value.replace("_", "").isalnum()
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not offenders, offenders


def test_environment_reads_the_commands_variables(tmp_path: Path) -> None:
    from core.settings import environment

    key = tmp_path / "key"
    key.write_text("s3cret\n")
    env = environment(
        {
            "POLINGO_REGISTRY": "/srv/reg",
            "POLINGO_ADAPTER": "docs",
            "POLINGO_API_KEY_FILE": str(key),
            "POLINGO_SERVICE_URL": "http://svc:8000",
            "POLINGO_SERVER": "",  # empty counts as unset
            "POLINGO_CACHE": "/srv/cache",
            "POLINGO_QUIET": "1",
        }
    )
    assert (env.registry, env.adapter, env.service_url, env.server) == (
        Path("/srv/reg"),
        "docs",
        "http://svc:8000",
        None,
    )
    assert env.key() == "s3cret" and env.quiet and env.reap_token is None
    assert env.model_cache_dir == Path("/srv/cache/models")
    assert environment({"POLINGO_API_KEY": "k", "POLINGO_API_KEY_FILE": "/no"}).key() == "k"
    with pytest.raises(ValueError, match="POLINGO_API_KEY_FILE: cannot read /no/such"):
        environment({"POLINGO_API_KEY_FILE": "/no/such"}).key()


def test_polingo_defaults_come_from_the_environment(tmp_path: Path) -> None:
    from cli.main import build_parser
    from core.settings import environment

    parser = build_parser(environment({"POLINGO_REGISTRY": str(tmp_path), "POLINGO_ADAPTER": "x"}))
    for argv in (["eval"], ["retrain", "--docs", "d"], ["train", "--data", "d"]):
        args = parser.parse_args(argv)
        assert (args.registry, args.adapter) == (tmp_path, "x"), argv
    assert parser.parse_args(["adapters", "list"]).registry == tmp_path
    assert parser.parse_args(["adapters", "rollback"]).name == "x"
    assert parser.parse_args(["review", "a.po"]).adapter == "x"
    plain = build_parser(environment({}))
    assert plain.parse_args(["eval"]).registry == Path("var/registry")
    assert plain.parse_args(["eval"]).adapter == "zh-tw"


def test_serve_options_are_generated_from_the_settings() -> None:
    """Every Settings field has one option, its help is the field's docstring, and a
    value given there arrives in that field."""
    import argparse

    from cli import serve
    from cli.options import field_docs, settings_flag
    from core.settings import Settings

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    by_dest = {a.dest: a for a in parser._actions}
    docs = field_docs(Settings)
    for field in dataclasses.fields(Settings):
        action = by_dest[field.name]
        assert action.option_strings[0] == settings_flag(field.name)
        assert action.help.startswith(docs[field.name].replace("%", "%%")), field.name
        assert action.default is None  # left out: the environment's value stands
    assert settings_flag("watch_interval_s") == "--watch-interval"
    assert settings_flag("max_new_tokens_cap") == "--max-new-tokens"
    args = parser.parse_args(
        ["--max-new-tokens", "64", "--no-prefix-caching", "--engine", "transformers",
         "--cache", "/c", "--watch-interval", "1.5", "--max-queue", "70"]
    )  # fmt: skip
    settings = serve.settings_from_args(args)
    assert settings.max_new_tokens_cap == 64 and settings.prefix_caching is False
    assert (settings.engine, settings.cache) == ("transformers", Path("/c"))
    assert (settings.watch_interval_s, settings.max_queue) == (1.5, 70)
    with pytest.raises(SystemExit):
        parser.parse_args(["--engine", "hf"])


def test_one_module_per_subcommand() -> None:
    from cli import main

    parser = main.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    modules = {m.__name__.rpartition(".")[2].rstrip("_") for m in main.COMMANDS}
    assert set(sub.choices) == modules
    for command, choice in sub.choices.items():
        assert choice.get_default("run") or all(
            p.get_default("run") for a in choice._actions if a.dest == "action"
            for p in a.choices.values()
        ), command  # fmt: skip
