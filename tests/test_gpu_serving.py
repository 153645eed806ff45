"""The service on the CUDA vLLM engine (skipped without a GPU and vLLM; run on the
device after `source bench/gpu/serve_env.sh` with `python3 -m pytest -s
tests/test_gpu_serving.py`): the real `polingo serve` on loopback with the default
adapter answers held-out entries as the transformers engine's greedy decoding does."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testkit import wait_until_ready

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (CUDA build)"),
]

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = REPO / "core/default_adapter/zh-tw/v3/report/predictions.jsonl"
ENTRIES = 64


def _translate(engine: str, texts: list[str], log: Path) -> list[tuple[str, bool]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # greedy only: the markup retry samples, and two engines' samples need not agree
    env = {**os.environ, "POLINGO_MARKUP_RETRIES": "0", "POLINGO_ENGINE": engine}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.serve", "--port", str(port)],
        env=env, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc, log)
        health = httpx.get(f"{url}/health").json()
        assert health["engine"].startswith(engine), health
        reply = httpx.post(
            f"{url}/translate", json={"items": [{"text": t} for t in texts]}, timeout=600
        )
        assert reply.status_code == 200, reply.text
        return [(t["text"], t["from_memory"]) for t in reply.json()["translations"]]
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def test_cuda_vllm_service_matches_transformers_greedy(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines()]
    texts = [r["msgid"] for r in rows[:ENTRIES]]
    vllm_out = _translate("vllm", texts, tmp_path / "vllm.log")
    hf_out = _translate("transformers", texts, tmp_path / "hf.log")
    # the project's memory answers some sources before any engine runs: not compared
    pairs = [
        (src, a, b)
        for src, (a, mem), (b, _) in zip(texts, vllm_out, hf_out, strict=True)
        if not mem
    ]
    assert len(pairs) >= ENTRIES // 2, f"only {len(pairs)} entries reached the engines"
    same = sum(a == b for _, a, b in pairs)
    share = same / len(pairs)
    print(f"\nvLLM (CUDA) and transformers greedy agree on {same}/{len(pairs)} ({share:.0%})")
    for src, a, b in pairs:
        if a != b:
            print(f"  differs: {src[:60]!r}\n    vllm: {a[:80]!r}\n    hf:   {b[:80]!r}")
    assert all(a for _, a, _ in pairs), "an empty translation from vLLM"
    assert share > 0.5, f"only {share:.0%} of the answers match"
