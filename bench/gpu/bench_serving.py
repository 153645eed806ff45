"""GPU serving benchmark: `polingo serve` on the CUDA vLLM engine (and on the
transformers engine for comparison), driven by `translate-po --server` over real
catalogs and by concurrent POST /translate requests. Appends each run to --out
(bench/results/gpu-serving.json): model, engine, path, entries, entries_per_s,
output_tokens_per_s (the service's own polingo_tokens_total{kind="generated"}),
startup_s (process start to /ready) and the settings used.

    # on the H200 after `source bench/gpu/serve_env.sh` (docs/benchmarks.md)
    python3 bench/gpu/bench_serving.py gemma --out bench/results/gpu-serving.json
    python3 bench/gpu/bench_serving.py llama3b --base-model DIR --registry DIR --out ...

`gemma`: the default adapter; translate-po fills the untranslated entries of the
tests/data snapshot (2024-10-19) through vLLM at its defaults, then the same subset of
files through vLLM and through the transformers engine; then HTTP runs over serving
settings (max_num_seqs, prefix caching, CUDA graphs); with --replicas N, N services
share the GPU and N translate-po runs share the catalogs. `llama3b`: a randomly initialised
Llama-3.2-3B with a rank-16 adapter trained by `polingo train`, exact-length generation
(POLINGO_EXACT_LENGTH) so that both engines generate the same number of tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polib

from testkit import free_port, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "tests/data/python-docs-zh-tw/2024-10-19"


_GAUGES = {
    "generated": r'^polingo_tokens_total\{kind="generated"\} (\S+)$',
    "in_flight": r"^polingo_queue_depth (\S+)$",
    "engine_pending": r"^polingo_engine_pending (\S+)$",
}


class Sampler:
    """Polls the service's /metrics every ``every`` s while a run goes on: how many
    sequences the engine held (mean, max) and the generated tokens per second, so a
    run shows whether the engine or its feeding was the limit, and how long the tail was."""

    def __init__(self, service: Service, every: float = 0.5) -> None:
        import threading

        self.service, self.every = service, every
        self.rows: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Sampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(httpx.HTTPError):
                self.rows.append((time.perf_counter() - self._started, self.service.gauges()))

    def summary(self) -> dict:
        if len(self.rows) < 2:
            return {}
        pending = [g["engine_pending"] for _, g in self.rows]
        flight = [g["in_flight"] for _, g in self.rows]
        per_s = []  # generated tokens in each whole second of the run
        start = self.rows[0][1]["generated"]
        for second in range(1, int(self.rows[-1][0]) + 1):
            upto = [g["generated"] for t, g in self.rows if t <= second]
            per_s.append(int(upto[-1] - start))
            start = upto[-1]
        return {
            "engine_pending_mean": round(sum(pending) / len(pending), 1),
            "engine_pending_max": int(max(pending)),
            "service_in_flight_mean": round(sum(flight) / len(flight), 1),
            "generated_tokens_each_s": per_s,
        }


def engine_settings(env: dict[str, str]) -> dict[str, object]:
    """The engine settings the service resolves from ``env`` (defaults included), for the
    record: a run at the defaults then says what the defaults were."""
    from core.settings import Settings

    settings = Settings.from_env(env)
    return {
        "max_num_seqs": settings.engine_max_num_seqs(),
        "max_num_batched_tokens": settings.engine_max_num_batched_tokens(),
        "max_lora_rank": settings.max_lora_rank,
        "max_loras": settings.max_loras,
        "prefix_caching": settings.prefix_caching,
        "cuda_graphs": settings.cuda_graphs,
    }


class Service:
    """`python -m cli.serve` in a child process, with POLINGO_* settings."""

    def __init__(self, log: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = {**dict(env), **engine_settings({**os.environ, **env})}
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_until_ready(self.url, self.proc, log)
        self.startup_s = time.perf_counter() - started

    def gauges(self) -> dict[str, float]:
        """Generated tokens so far, the texts in flight in the service and the
        sequences the engine holds, from the service's own /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        found = {}
        for key, pattern in _GAUGES.items():
            match = re.search(pattern, text, re.M)
            found[key] = float(match.group(1)) if match else 0.0
        return found

    def generated_tokens(self) -> int:
        return int(self.gauges()["generated"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def untranslated(path: Path) -> list[polib.POEntry]:
    return [e for e in polib.pofile(str(path)).untranslated_entries() if not e.obsolete]


def catalog_subset(dest: Path, limit: int | None, snapshot: Path = SNAPSHOT) -> int:
    """Copy the snapshot's catalogs into ``dest``, whole files in sorted order until
    ``limit`` untranslated entries (all when None); returns the entries to fill."""
    total = 0
    for path in sorted(snapshot.rglob("*.po")):
        count = len(untranslated(path))
        if count == 0:
            continue
        if limit is not None and total >= limit:
            break
        target = dest / path.relative_to(snapshot)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        total += count
    return total


def rates(entries: int, tokens: int, wall: float) -> dict:
    """The figures every run reports: wall time, entries and generated tokens a second."""
    return {
        "wall_s": round(wall, 2),
        "entries_per_s": round(entries / wall, 2),
        "output_tokens_per_s": round(tokens / wall, 1),
        "generated_tokens": tokens,
    }


def translate_po_command(service: Service, jobs: int, folder: Path) -> list[str]:
    """`translate-po --server` filling ``folder`` through ``service`` with ``jobs`` batches."""
    return [
        sys.executable, "-m", "clients.translate_po", "--server", service.url,
        "-j", str(jobs), "--no-progress", str(folder),
    ]  # fmt: skip


def translate_po_run(
    service: Service, limit: int | None, jobs: int, snapshot: Path = SNAPSHOT
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        todo = catalog_subset(folder, limit, snapshot)
        before = service.generated_tokens()
        started = time.perf_counter()
        with Sampler(service) as sampler:
            done = subprocess.run(
                translate_po_command(service, jobs, folder),
                cwd=REPO,
                capture_output=True,
                text=True,
            )
        wall = time.perf_counter() - started
        tokens = service.generated_tokens() - before
        left = sum(len(untranslated(p)) for p in folder.rglob("*.po"))
        checked = [  # one catalog a call: msgfmt merges several into one
            subprocess.run(["msgfmt", "--check", "-o", os.devnull, str(p)], capture_output=True)
            for p in folder.rglob("*.po")
        ]
    if done.returncode not in (0, 1):
        raise RuntimeError(f"translate-po failed ({done.returncode}): {done.stderr[-2000:]}")
    filled = todo - left
    return {
        "path": "translate-po",
        "entries": filled,
        "entries_to_fill": todo,
        "snapshot": str(snapshot.relative_to(REPO) if snapshot.is_relative_to(REPO) else snapshot),
        "jobs": jobs,
        **rates(filled, tokens, wall),
        "msgfmt_check": all(c.returncode == 0 for c in checked),
        "translate_po_exit": done.returncode,
        "summary": done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else [],
        **sampler.summary(),
    }


def replicas_run(services: list[Service], jobs: int, snapshot: Path = SNAPSHOT) -> dict:
    """Several translators at once, each with its own replica on the same GPU: the
    snapshot's catalogs dealt out file by file, one `translate-po -j JOBS` per replica,
    all started together; the rate is all entries over the wall time of the slowest."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp, f"r{i}") for i in range(len(services))]
        todo = 0
        catalogs = [p for p in sorted(snapshot.rglob("*.po")) if untranslated(p)]
        for n, path in enumerate(catalogs):
            target = folders[n % len(folders)] / path.relative_to(snapshot)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            todo += len(untranslated(path))
        before = [s.generated_tokens() for s in services]
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                translate_po_command(s, jobs, folder),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for s, folder in zip(services, folders, strict=True)
        ]
        errors = [p.communicate()[1] for p in procs]
        wall = time.perf_counter() - started
        tokens = sum(s.generated_tokens() - b for s, b in zip(services, before, strict=True))
        left = sum(len(untranslated(p)) for p in Path(tmp).rglob("*.po"))
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"translate-po failed ({proc.returncode}): {err[-2000:]}")
    return {
        "path": "translate-po",
        "replicas": len(services),
        "entries": todo - left,
        "entries_to_fill": todo,
        "jobs": jobs,
        **rates(todo - left, tokens, wall),
        "translate_po_exits": [p.returncode for p in procs],
    }


def source_texts(limit: int) -> list[str]:
    texts = []
    for path in sorted(SNAPSHOT.rglob("*.po")):
        entries = untranslated(path)
        texts += [e.msgid for e in entries if not e.msgid_plural and len(e.msgid) <= 8000]
    return texts[:limit]


async def _post_all(url: str, texts: list[str], batch: int, clients: int) -> int:
    queue = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    answered = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal answered
        while queue:
            chunk = queue.pop()
            for _attempt in range(50):
                reply = await client.post(
                    f"{url}/translate", json={"items": [{"text": t} for t in chunk]}
                )
                if reply.status_code != 503:
                    break
                await asyncio.sleep(0.2)  # the service's queue is full: wait, send again
            if reply.status_code == 422:  # a text the service refuses (too long for the model)
                continue
            reply.raise_for_status()
            answered += len(reply.json()["translations"])

    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return answered


def http_run(service: Service, texts: list[str], batch: int, clients: int) -> dict:
    before = service.generated_tokens()
    started = time.perf_counter()
    with Sampler(service) as sampler:
        answered = asyncio.run(_post_all(service.url, texts, batch, clients))
    wall = time.perf_counter() - started
    tokens = service.generated_tokens() - before
    return {
        "path": "http",
        "entries": answered,
        "clients": clients,
        "batch": batch,
        **rates(answered, tokens, wall),
        **sampler.summary(),
    }


class Recorder:
    def __init__(self, out: Path, model: str) -> None:
        import torch

        self.out, self.model = out, model
        self.data = json.loads(out.read_text()) if out.exists() else {"runs": []}
        self.data["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        self.data["date"] = time.strftime("%Y-%m-%d")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True)
        self.data["commit"] = commit.stdout.decode().strip() or None

    def add(self, service: Service, engine: str, run: dict, **extra: object) -> None:
        row = {"model": self.model, "engine": engine, **run}
        row["startup_s"] = round(service.startup_s, 1)
        row["settings"] = {**service.settings, **extra}
        self.data["runs"].append(row)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps(row, ensure_ascii=False), flush=True)


def start_services(log: Path, args: list[str], env: dict[str, str], count: int) -> list[Service]:
    """``count`` services started one after another (vLLM's start-up profiling asserts
    that no other process frees GPU memory meanwhile, which a replica starting beside it
    does); all stopped again if one fails."""
    started: list[Service] = []
    try:
        for _ in range(count):
            started.append(Service(log, args, env))
    except BaseException:
        for service in started:
            service.stop()
        raise
    return started


def with_service(log: Path, args: list[str], env: dict[str, str], body) -> None:
    service = Service(log, args, env)
    try:
        body(service)
    finally:
        service.stop()


def settings_env(pairs: list[str]) -> dict[str, str]:
    """POLINGO_X=V arguments as an environment."""
    return dict(kv.split("=", 1) for kv in pairs)


def bench_gemma(opts: argparse.Namespace, rec: Recorder) -> None:
    """The default adapter: translate-po over the whole snapshot at each -j, a subset
    and the HTTP path (none with --http-entries 0) on vLLM at its defaults; then each
    --variants service; then the same subset on the transformers engine; then the
    --replicas services side by side."""
    log = opts.log
    common = {"POLINGO_MAX_QUEUE": str(opts.max_queue), **settings_env(opts.settings)}
    texts = source_texts(opts.http_entries)
    most = max(opts.jobs)

    def defaults(service: Service) -> None:
        for jobs in opts.jobs:
            for attempt in range(1, opts.repeat + 1):  # a rerun shows the first run's cost
                run = translate_po_run(service, opts.entries, jobs, opts.snapshot)
                rec.add(service, "vllm", dict(run, attempt=attempt))
        rec.add(service, "vllm", translate_po_run(service, opts.compare_entries, opts.jobs[0]))
        if texts:
            rec.add(service, "vllm", http_run(service, texts, 64, 32))

    if not opts.no_defaults:
        with_service(log, ["--engine", "vllm"], common, defaults)
    for variant in opts.variants:
        env = dict(common, **settings_env(variant.split(",")))
        with_service(
            log, ["--engine", "vllm"], env,
            lambda s: rec.add(s, "vllm", translate_po_run(s, opts.entries, most)),
        )  # fmt: skip
    if opts.compare_entries:
        with_service(
            log, ["--engine", "transformers"], common,
            lambda s: rec.add(
                s, "transformers", translate_po_run(s, opts.compare_entries, opts.jobs[0])
            ),
        )  # fmt: skip
    if opts.replicas > 1:
        # one GPU shared by several services: each gets a slice of its memory
        env = dict(common, POLINGO_GPU_MEMORY_UTILIZATION=str(opts.replica_memory))
        env.update(settings_env(opts.replica_settings))
        services = start_services(log, ["--engine", "vllm"], env, opts.replicas)
        try:
            rec.add(services[0], "vllm", replicas_run(services, most))
        finally:
            for service in services:
                service.stop()


def bench_llama3b(opts: argparse.Namespace, rec: Recorder) -> None:
    base = opts.base_model
    if not any(base.glob("*.safetensors*")):
        # the same random weights as the adapter's CPU build (bench/gpu/train_r3b.sh: same
        # seed and tokenizer), in bf16, made on the GPU
        from testkit import build_random_model

        tokenizer = opts.registry.parent / "tokenizer"
        build_random_model(
            base, "llama-3.2-3b", tokenizer_dir=tokenizer, weights=True, device="cuda"
        )
    args = ["--base-model", str(base), "--registry", str(opts.registry)]
    env = {
        "POLINGO_EXACT_LENGTH": "true",
        "POLINGO_MAX_NEW_TOKENS": str(opts.new_tokens),
        "POLINGO_MARKUP_RETRIES": "0",
        "POLINGO_MAX_QUEUE": "2048",
        **settings_env(opts.settings),
    }
    texts = source_texts(opts.http_entries)
    for seqs in opts.max_num_seqs:
        run_env = dict(env, POLINGO_MAX_NUM_SEQS=str(seqs))
        with_service(
            opts.log, ["--engine", "vllm", *args], run_env,
            lambda s: rec.add(s, "vllm", http_run(s, texts, 64, 32)),
        )  # fmt: skip
    with_service(
        opts.log, ["--engine", "transformers", *args], env,
        lambda s: rec.add(s, "transformers", http_run(s, texts[: opts.compare_entries], 64, 4)),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("gemma", "llama3b"))
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/gpu-serving.json")
    parser.add_argument(
        "--log", type=Path, default=Path(os.environ.get("OUT", "/tmp"), "bench-serving.log")
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[16, 64], help="translate-po -j")
    parser.add_argument("--max-queue", type=int, default=4096, help="POLINGO_MAX_QUEUE")
    parser.add_argument(
        "--entries", type=int, default=None,
        help="whole-snapshot runs fill the files of the first N entries only (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--snapshot", type=Path, default=SNAPSHOT,
        help="the catalogs of the whole-snapshot runs (default: the tests/data copy)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=1, help="whole-snapshot runs at each -j, one after another"
    )
    parser.add_argument("--compare-entries", type=int, default=250)
    parser.add_argument("--http-entries", type=int, default=2000)
    parser.add_argument(
        "--variants", nargs="*", default=[],
        help="POLINGO_X=V[,POLINGO_Y=W]: a vLLM service with these settings, translate-po at "
        "the largest --jobs (gemma)",
    )  # fmt: skip
    parser.add_argument(
        "--no-defaults", action="store_true",
        help="gemma: skip the runs of the service at its defaults (variants, replicas and "
        "--compare-entries still run)",
    )  # fmt: skip
    parser.add_argument(
        "--replicas", type=int, default=1,
        help="gemma: then this many vLLM services on the one GPU, the snapshot's catalogs "
        "dealt out among as many translate-po runs at the largest --jobs, all at once",
    )  # fmt: skip
    parser.add_argument(
        "--replica-memory", type=float, default=0.1,
        help="POLINGO_GPU_MEMORY_UTILIZATION of each replica (default 0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--replica-settings", nargs="*", default=[], metavar="POLINGO_X=V",
        help="more settings of the replicas",
    )  # fmt: skip
    parser.add_argument(
        "--settings", nargs="*", default=[], metavar="POLINGO_X=V",
        help="settings of every service this run starts (both models)",
    )  # fmt: skip
    parser.add_argument(
        "--base-model", type=Path,
        help="llama3b: the random 3B model's folder (built there on the GPU when it has no "
        "weights, with the tokenizer beside --registry)",
    )  # fmt: skip
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--max-num-seqs", type=int, nargs="*", default=[256])
    opts = parser.parse_args()
    rec = Recorder(opts.out, "gemma3-270m" if opts.which == "gemma" else "llama-3.2-3b-random")
    (bench_gemma if opts.which == "gemma" else bench_llama3b)(opts, rec)


if __name__ == "__main__":
    main()
