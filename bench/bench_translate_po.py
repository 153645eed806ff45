"""Time filling one real catalog with ``translate-po`` through the HTTP service.

    # against a running service
    python bench/bench_translate_po.py --server http://127.0.0.1:8000
    # or start one here (python -m cli.serve) on a registry
    python bench/bench_translate_po.py --registry var/registry --adapter zh-tw --engine vllm

Copies the catalog (default: library/functions.po of the 2024-10-19 snapshot, 121
untranslated entries) to a temporary folder, optionally keeps only its first --limit
entries to fill, runs the real ``translate-po`` command on it and prints the wall time,
entries per second and whether the output passes msgfmt --check and powrap --check.
"""

from __future__ import annotations

import argparse
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

from testkit import free_port

REPO = Path(__file__).resolve().parents[1]
# The test fixture: a trimmed copy of the 2024-10-19 snapshot (--po/--catalog for others).
DATA = REPO / "tests/data/python-docs-zh-tw/2024-10-19"
DEFAULT_CATALOG = DATA / "library/functions.po"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="URL of a running service (else one is started here)")
    parser.add_argument("--registry", type=Path, help="registry for the service started here")
    parser.add_argument("--adapter", help="adapter NAME[@VERSION]")
    parser.add_argument("--base-model", help="base model for the service started here")
    parser.add_argument("--engine", default="vllm", choices=("vllm", "transformers"))
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    parser.add_argument("--limit", type=int, help="fill only the first N entries that need it")
    parser.add_argument("--jobs", type=int, default=4, help="requests in flight (translate-po -j)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not args.server and not args.registry:
        parser.error("give --server URL or --registry DIR")
    return args


def start_service(args: argparse.Namespace, log_path: Path) -> tuple[str, subprocess.Popen, float]:
    port = free_port()
    cores = len(os.sched_getaffinity(0))
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}"),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
    }
    command = [sys.executable, "-m", "cli.serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--registry", str(args.registry), "--engine", args.engine]
    if args.adapter:
        command += ["--adapter", args.adapter]
    if args.base_model:
        command += ["--base-model", args.base_model]
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return url, proc, time.perf_counter() - started
        except httpx.TransportError:
            pass
        if time.perf_counter() - started > 900:
            proc.terminate()
            raise SystemExit(f"the service was not ready in 900 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def prepare(catalog: Path, folder: Path, limit: int | None) -> tuple[Path, int]:
    target = folder / catalog.name
    shutil.copyfile(catalog, target)
    po = polib.pofile(str(target), wrapwidth=0)
    todo = [e for e in po if not e.obsolete and not e.fuzzy and not e.translated()]
    if limit is not None and limit < len(todo):
        drop = {id(e) for e in todo[limit:]}
        kept = [e for e in po if id(e) not in drop]
        po[:] = kept
        text = subprocess.run(
            ["msgcat", "-", "-o", "-"],
            input=po.__unicode__() + "\n",
            text=True,
            capture_output=True,
            check=True,
        ).stdout
        target.write_text(text, encoding="utf-8")
        todo = todo[:limit]
    return target, len(todo)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-translate-po-") as tmp:
        folder = Path(tmp)
        proc = None
        startup = None
        url = args.server
        if not url:
            url, proc, startup = start_service(args, folder / "service.log")
        try:
            path, entries = prepare(args.catalog, folder, args.limit)
            command = [sys.executable, "-m", "clients.translate_po", str(path), "--server", url]
            command += ["-j", str(args.jobs), "--batch-size", str(args.batch_size), "--no-progress"]
            if args.adapter:
                command += ["--adapter", args.adapter]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            elapsed = time.perf_counter() - started
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=120)
        total = re.search(r"^total .*$", done.stdout, re.M)
        msgfmt = subprocess.run(["msgfmt", "--check", "-o", os.devnull, str(path)]).returncode == 0
        powrap = subprocess.run(["powrap", "--check", "--quiet", str(path)]).returncode == 0
        figures = {
            "catalog": str(
                args.catalog.relative_to(DATA)
                if args.catalog.is_relative_to(DATA)
                else args.catalog
            ),
            "entries": entries,
            "jobs": args.jobs,
            "batch_size": args.batch_size,
            "seconds": round(elapsed, 1),
            "entries_per_s": round(entries / elapsed, 2) if elapsed else None,
            "service_startup_s": round(startup, 1) if startup is not None else None,
            "exit_status": done.returncode,
            "report": total.group(0) if total else done.stderr[-500:],
            "msgfmt_check_ok": msgfmt,
            "powrap_check_ok": powrap,
        }
        print(json.dumps(figures, indent=2, ensure_ascii=False))
        return 0 if done.returncode == 0 and msgfmt and powrap else 1


if __name__ == "__main__":
    sys.exit(main())
