"""Shared by the service tests: a registry built the way training writes one."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from core.prompt import PromptContract
from core.registry import MEMORY, DataSummary, Manifest, Registry

REPO = Path(__file__).resolve().parents[1]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def add_version(
    registry: Registry,
    name: str,
    adapter_dir: Path,
    *,
    base_model: str,
    memory: list[dict] | None = None,
    promote: bool = True,
    corrupt: bool = False,
) -> str:
    """Copy a PEFT adapter into a new registry version with a manifest and memory.jsonl."""
    with registry.new_version(name) as (version, folder):
        for file in ADAPTER_FILES:
            shutil.copy(adapter_dir / file, folder / file)
        if corrupt:  # same size, garbage bytes: unreadable weights
            weights = folder / "adapter_model.safetensors"
            weights.write_bytes(b"\x00garbage" * (weights.stat().st_size // 8))
        lines = [json.dumps(entry, ensure_ascii=False) for entry in memory or []]
        (folder / MEMORY).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        manifest = Manifest(
            name=name,
            version=version,
            base_model=base_model,
            contract=PromptContract(),
            data=DataSummary(fingerprint="test", source="tests", pairs=len(memory or [])),
            metrics={"chrf": 1.0},
            created_at="2026-12-01T00:00:00Z",
        )
        registry.write_manifest(folder, manifest)
    if promote:
        registry.promote(f"{name}@{version}", reason="test")
    return version


def variant_adapter(adapter_dir: Path, out_dir: Path, *, scale: float) -> Path:
    """A copy of a PEFT adapter with its lora_B weights scaled: another adapter, same shapes."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    changed = {k: (v * scale if "lora_B" in k else v).contiguous() for k, v in tensors.items()}
    save_file(changed, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    shutil.copy(adapter_dir / "adapter_config.json", out_dir / "adapter_config.json")
    return out_dir


MEMORY_V1 = [
    {"msgid": "Open", "msgctxt": "menu", "msgstr": "開啟（選單）"},
    {"msgid": "Open", "msgctxt": None, "msgstr": "開啟"},
    {"msgid": "Built-in Functions", "msgctxt": None, "msgstr": "內建函式"},
]
MEMORY_V2 = [{"msgid": "Built-in Functions", "msgctxt": None, "msgstr": "內建函式 v2"}]


def mismatched_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """A copy of a PEFT adapter whose lora_A matrices take half the input width, as an
    adapter made for a narrower model would."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    cut = {
        k: (v[:, : v.shape[1] // 2] if "lora_A" in k else v).contiguous()
        for k, v in tensors.items()
    }
    save_file(cut, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    shutil.copy(adapter_dir / "adapter_config.json", out_dir / "adapter_config.json")
    return out_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and int(child.name) not in found:
                found.add(int(child.name))
                todo.append(int(child.name))
    return found


@contextlib.contextmanager
def running_service(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """The real `python -m cli.serve` on a free loopback port, ready; its URL.
    Output goes to ``log_path``, whose end is shown if the service dies or never gets
    ready; the service is stopped afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "cli.serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"service not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stub_translator(engine: Any, tokenizer: Any, model_dir: Path, settings: Any) -> Any:
    """A Translator over a fake engine and the tiny model's tokenizer, with no registry:
    the unit tests hand it an adapter themselves."""
    from service.translator import Translator

    return Translator(
        settings=settings,
        registry=Registry(model_dir / "no-registry"),
        engine=engine,
        tokenizer=tokenizer,
        base_model="tiny",
        base_path=model_dir,
        default_adapter="zh",
    )
