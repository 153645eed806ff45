"""Where the service's own CPU time goes, without the engine: the real Translator and
adapter (memory lookup, retrieval, prompt building, tokenising, decoding, post-editing,
checks) in front of an instant fake engine (named as such) that answers each prompt
with its source's placeholder text at once. The rate it reports is the ceiling that
the service process puts on any engine, GPU or not.

    python bench/profile_service.py                      # default adapter, snapshot
    python bench/profile_service.py --profile 25          # + cProfile's top 25
    python bench/profile_service.py --translate-po 16     # the whole pipeline: the real
        # service (Litestar, uvicorn on loopback) in front of the fake engine, filled by
        # the real `translate-po --server -j 16` over a copy of the snapshot
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polib

from core.registry import Registry
from core.settings import Settings
from service.engines import Generation
from service.schemas import TranslateItem
from service.translator import Translator, resolve_base, translate_all
from testkit import free_port

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "tests/data/python-docs-zh-tw/2024-10-19"


class EchoEngine:
    """A fake engine (named as such): every answer is the prompt's own source text
    (placeholders in), encoded, so the translator's post-processing runs as usual."""

    kind = "echo (fake)"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.sources: dict[int, list[int]] = {}

    async def add_adapter(self, key: str, path: Path) -> None: ...

    async def remove_adapter(self, key: str) -> None: ...

    def pending(self) -> int:
        return 0

    async def generate(self, prompts, *, max_tokens, **_):
        pairs = zip(prompts, max_tokens, strict=True)
        return [Generation(self.sources.get(id(p), [])[:m], "stop") for p, m in pairs]


def untranslated_items(limit: int | None) -> list[TranslateItem]:
    items = []
    for path in sorted(SNAPSHOT.rglob("*.po")):
        for entry in polib.pofile(str(path)):
            if not entry.translated() and not entry.obsolete and len(entry.msgid) <= 8000:
                items.append(TranslateItem(entry.msgid, entry.msgctxt))
    return items[:limit]


def service_jobs(translator, adapter, items: list[TranslateItem]) -> list:  # noqa: ANN001
    """The engine inputs (prompt ids and token budget) the service builds for ``items``:
    contract, memory examples, tokenising, exactly as /translate does."""
    texts = [i.text for i in items]
    shown = adapter.prompts.examples_for(texts)
    prepared = adapter.prompts.prompts(texts, [i.msgctxt for i in items], shown)
    return [translator._encode(p, "text") for p in prepared]


async def echo_translator(registry: Path, **overrides: object) -> tuple[Translator, str]:
    """The real Translator for the registry's first adapter, on the fake EchoEngine
    (``overrides``: Settings fields over the POLINGO_* environment)."""
    from transformers import AutoTokenizer

    settings = Settings.from_env(registry=registry, **overrides)
    reg = Registry(registry)
    name = reg.names()[0]
    manifest = reg.manifest(f"{name}@{reg.resolve(name)[1]}")
    base_path = resolve_base(manifest.base_model, settings.model_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    engine = EchoEngine(tokenizer)
    translator = Translator(
        settings=settings,
        registry=reg,
        engine=engine,
        tokenizer=tokenizer,
        base_model=manifest.base_model,
        base_path=base_path,
        default_adapter=name,
    )
    await translator.reload()
    encode = translator._encode

    def encode_and_remember(prepared, param):
        job = encode(prepared, param)
        engine.sources[id(job.prompt)] = tokenizer(job.prepared.source, add_special_tokens=False)[
            "input_ids"
        ]
        return job

    translator._encode = encode_and_remember
    return translator, name


async def run(registry: Path, limit: int | None) -> tuple[int, float]:
    translator, name = await echo_translator(registry)
    items = untranslated_items(limit)
    started = time.perf_counter()
    await translate_all(translator, name, items)
    return len(items), time.perf_counter() - started


async def run_translate_po(registry: Path, jobs: int, profile: Path | None) -> tuple[int, float]:
    """The service app on uvicorn (loopback) with the fake engine, and translate-po
    --server in a child process filling a copy of the snapshot: the pipeline's ceiling."""
    import uvicorn

    from service.app import create_app

    translator, _ = await echo_translator(registry, max_queue=8192)
    port = free_port()
    app = create_app(translator.settings, translator)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(SNAPSHOT, tmp, dirs_exist_ok=True)
        catalogs = Path(tmp).rglob("*.po")
        todo = sum(len(polib.pofile(str(p)).untranslated_entries()) for p in catalogs)
        started = time.perf_counter()
        profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
        child = await asyncio.create_subprocess_exec(
            sys.executable, *profiling, "-m", "clients.translate_po", "--server", f"http://127.0.0.1:{port}",
            "-j", str(jobs), "--no-progress", tmp, cwd=REPO,
        )  # fmt: skip
        await child.wait()
        wall = time.perf_counter() - started
    server.should_exit = True
    await serving
    return todo, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=REPO / "core/default_adapter")
    parser.add_argument("--limit", type=int, default=None, help="first N entries only")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N")
    parser.add_argument(
        "--translate-po", type=int, metavar="JOBS", default=0,
        help="run the whole pipeline: service on loopback + translate-po --server -j JOBS "
        "(with --profile: cProfile of the translate-po process)",
    )  # fmt: skip
    opts = parser.parse_args()
    if opts.translate_po:
        profile = Path(tempfile.mkdtemp()) / "translate-po.prof" if opts.profile else None
        n, wall = asyncio.run(run_translate_po(opts.registry, opts.translate_po, profile))
        if profile:  # translate-po's own time (the service's: without --translate-po)
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(opts.profile)
        print(f"translate-po -j {opts.translate_po}: {n} entries to fill in {wall:.2f} s: "
              f"{n / wall:.1f} entries/s")  # fmt: skip
        return
    profiler = cProfile.Profile() if opts.profile else None
    if profiler:
        profiler.enable()
    n, wall = asyncio.run(run(opts.registry, opts.limit))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(opts.profile)
    print(f"{n} entries in {wall:.2f} s: {n / wall:.1f} entries/s ({wall / n * 1000:.2f} ms each)")


if __name__ == "__main__":
    main()
