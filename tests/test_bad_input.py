"""The bad-input matrix (issue 15): what a careless user or an attacker sends, and the
answer each must get. Add a row for every new case.

The HTTP rows run against the real `python -m cli.serve` on loopback (transformers
engine, tiny model: quick to start); the rest call the functions the commands use.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from test_service_helpers import REPO, add_version, free_port, running_service

from core.markup import check_translation
from core.registry import Registry, RegistryError, parse_ref
from core.settings import Settings
from service.schemas import TranslateRequest

EVIL_REFS = ["/tmp/evil@v1", "../evil@v1", "/tmp/./evil@v1", "//tmp/evil@v1", "zh@1", "zh@v1/x"]


# ---- adapter references ---------------------------------------------------------------
@pytest.mark.parametrize("ref", [*EVIL_REFS, "", ".hidden", "a" * 65, "zh@", "zh@v"])
def test_adapter_refs_outside_the_rule_are_refused(ref: str) -> None:
    with pytest.raises(RegistryError, match="no paths"):
        parse_ref(ref)


def test_registry_paths_stay_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "v1").mkdir(parents=True)
    (outside / "v1" / "manifest.json").write_text("{}")
    registry = Registry(tmp_path / "registry")
    registry.root.mkdir()
    (registry.root / "evil").symlink_to(outside)  # a valid name that leads elsewhere
    with pytest.raises(RegistryError, match="outside the registry"):
        registry.path("evil@v1")
    with pytest.raises(RegistryError, match="bad adapter name"):
        registry.versions("../outside")


def test_rollback_skips_a_version_whose_folder_was_removed(tmp_path: Path) -> None:
    # the shipped registry keeps v1 and the current version, not every one between
    registry = Registry(tmp_path / "registry")
    for version in ("v1", "v2", "v3"):
        (registry.folder("zh") / version).mkdir(parents=True)
        (registry.folder("zh") / version / "manifest.json").write_text("{}")
        registry.promote(f"zh@{version}")
    (registry.folder("zh") / "v2" / "manifest.json").unlink()
    assert registry.rollback("zh") == "v1" and registry.current("zh") == "v1"
    assert registry.history("zh")[-1]["reason"] == "rollback from v3"
    (registry.folder("zh") / "v3" / "manifest.json").unlink()
    registry.promote("zh@v1")  # v1 after v1: nothing earlier that exists
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("zh")


# ---- settings that cannot work together --------------------------------------------------
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POLINGO_MAX_QUEUE": "4"}, "POLINGO_MAX_QUEUE=4 is below POLINGO_MAX_BATCH=64"),
        ({"POLINGO_MAX_BATCH": "65"}, "POLINGO_MAX_BATCH=65: at most 64"),
        ({"POLINGO_MAX_TEXT_CHARS": "9000"}, "at most 8000"),
        ({"POLINGO_PORT": "eighty"}, "POLINGO_PORT='eighty': Expected `int`"),
        ({"POLINGO_ENGINE": "hf"}, "POLINGO_ENGINE='hf': Invalid enum value"),
        ({"POLINGO_GPU_MEMORY_UTILIZATION": "1.5"}, "POLINGO_GPU_MEMORY_UTILIZATION must lie"),
        ({"POLINGO_WATCH_INTERVAL": "-1"}, "POLINGO_WATCH_INTERVAL must be 0 or more"),
        ({"POLINGO_MODEL_CACHE": "/x"}, "set POLINGO_CACHE"),
        ({"POLINGO_API_KEY_FILE": "/no/such/key"}, "POLINGO_API_KEY_FILE: cannot read"),
    ],
)
def test_settings_refused_at_start_with_the_variable(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("`", ".")):
        Settings.from_env(env)


# ---- requests, without a server -------------------------------------------------------------
def test_msgctxt_has_a_length_cap() -> None:
    body = json.dumps({"items": [{"text": "Open", "msgctxt": "x" * 100_000}]})
    with pytest.raises(msgspec.ValidationError, match=r"items\[0\]\.msgctxt"):
        msgspec.json.decode(body, type=TranslateRequest)


@pytest.mark.parametrize("output", ["開啟\x00", "開啟\u202e檔案", "\u2066開啟\u2069", "a\x1bb"])
def test_control_characters_in_outputs_warn(output: str) -> None:
    warnings = check_translation("Open the file.", output)
    assert any(w.startswith("control characters: U+") for w in warnings), warnings


def test_newlines_and_tabs_do_not_warn() -> None:
    assert check_translation("a\nb", "甲\n乙\t") == []


# ---- commands --------------------------------------------------------------------------------
@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "inf", "soon"])
def test_translate_po_timeout_must_be_positive(timeout: str, tmp_path: Path, capsys) -> None:
    from clients.translate_po import main

    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--timeout", timeout])
    assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "data"])
def test_a_missing_docs_folder_is_named_without_a_traceback(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-docs"
    if command == "eval":  # with a real adapter: only --data is wrong
        args = ["eval", "--registry", "core/default_adapter", "--data", str(missing)]
    else:
        args = ["data", "stats", str(missing)]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {missing}: no such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_a_missing_registry_says_what_to_do(tmp_path: Path, capsys) -> None:
    from cli import serve

    assert serve.main(["--registry", str(tmp_path / "var/registry")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "packaged default adapter" in err


def test_serve_refuses_a_queue_below_the_batch(capsys) -> None:
    from cli import serve

    assert serve.main(["--max-queue", "4"]) == 2
    assert "POLINGO_MAX_QUEUE=4 is below" in capsys.readouterr().err


def test_serve_reads_the_api_key_from_a_file(tmp_path: Path) -> None:
    import argparse

    from cli import serve

    key = tmp_path / "key"
    key.write_text("s3cret\n")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    settings = serve.settings_from_args(parser.parse_args(["--api-key-file", str(key)]))
    assert settings.api_key == "s3cret"
    help_text = parser.format_help()
    assert "ps" in help_text and "--api-key-file" in help_text


# ---- the real service over HTTP -----------------------------------------------------------
ODD_MEMORY = [{"msgid": "Reverse", "msgctxt": None, "msgstr": "反\u202e轉\x00"}]


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_model_dir: Path, tiny_adapter: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("bad-input")
    registry = Registry(root / "registry")
    add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir), memory=ODD_MEMORY)
    (root / "evil" / "v1").mkdir(parents=True)  # what "/tmp/evil@v1" would have loaded
    env = {
        **os.environ,
        "POLINGO_REGISTRY": str(registry.root),
        "POLINGO_ENGINE": "transformers",
        "POLINGO_MAX_NEW_TOKENS": "8",
    }
    with running_service(env, root / "service.log") as url:
        yield url


def _post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url + "/translate", timeout=120, **kwargs)


JSON = {"content-type": "application/json"}
GOOD = json.dumps({"items": [{"text": "Open the file."}]}).encode()

# (name, request keyword arguments, status, error type, param, words in the message)
HTTP_CASES = [
    *[
        (
            f"adapter {ref}",
            {"json": {"items": [{"text": "Open the file."}], "adapter": ref}},
            422,
            "invalid_request",
            "adapter",
            "no paths",
        )
        for ref in EVIL_REFS
    ],
    ("text/plain body", {"content": GOOD, "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type", "content-type", "application/json"),
    ("form body", {"content": GOOD, "headers": {"content-type": "multipart/form-data"}}, 415,
     "unsupported_media_type", "content-type", "application/json"),
    ("body without a type", {"content": GOOD}, 415, "unsupported_media_type", "content-type",
     "unnamed"),
    ("missing body", {"headers": JSON}, 422, "invalid_request", None, "no body"),
    ("100k-char msgctxt", {"json": {"items": [{"text": "Open", "msgctxt": "x" * 100_000}]}},
     422, "invalid_request", "items[0].msgctxt", "length <= 500"),
    ("previous_text alone", {"json": {"items": [{"text": "Open", "previous_text": "Opened"}]}},
     422, "invalid_request", "items[0]", "give both or neither"),
    ("empty previous_translation", {"json": {"items": [
        {"text": "Open", "previous_text": "Opened", "previous_translation": ""}]}},
     422, "invalid_request", "items[0].previous_translation", "length >= 1"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "status", "kind", "param", "words"),
    [case[1:] for case in HTTP_CASES],
    ids=[case[0] for case in HTTP_CASES],
)
def test_http_bad_input(service: str, kwargs, status, kind, param, words) -> None:
    response = _post(service, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (kind, param, status)
    assert words in error["message"]


@pytest.mark.slow
def test_http_update_without_update_mode_answers_the_previous_translation(service: str) -> None:
    """Issue 41: the tiny adapter's contract has no update mode, so an item with a previous
    translation gets it back (with a note), not a translation from scratch."""
    item = {"text": "Open the files.", "previous_text": "Open the file.",
            "previous_translation": "開啟檔案。"}  # fmt: skip
    answer = _post(service, json={"items": [item, {"text": "Open the file."}]})
    assert answer.status_code == 200, answer.text
    kept, generated = answer.json()["translations"]
    assert kept["text"] == "開啟檔案。" and not kept["from_memory"]
    assert "zh@v1 has no update mode: the previous translation is kept" in kept["warnings"]
    assert generated["text"] != "開啟檔案。"


@pytest.mark.slow
def test_http_good_request_and_control_characters_warn(service: str) -> None:
    body = {"items": [{"text": "Open the file."}, {"text": "Reverse"}]}
    answer = _post(service, json=body)
    assert answer.status_code == 200, answer.text
    generated, remembered = answer.json()["translations"]
    assert generated["adapter"] == "zh@v1"
    assert remembered["from_memory"]
    assert "control characters: U+0000 U+202E" in remembered["warnings"]


@pytest.mark.slow
def test_http_metrics_bounded_and_typed_once(service: str) -> None:
    _post(service, content=GOOD, headers={"content-type": "text/plain"})
    for i in range(5):  # every label the test can create, once
        httpx.get(f"{service}/schema/x{i}")
        httpx.get(f"{service}/nope/{i}")
    httpx.get(service + "/metrics")  # /metrics's own series appear after its first answer
    before = httpx.get(service + "/metrics")
    assert before.headers["content-type"].count("charset") == 1
    for i in range(200):
        httpx.get(f"{service}/schema/y{i}")
        httpx.get(f"{service}/no/such/{i}")
    after = httpx.get(service + "/metrics").text
    assert len(after.splitlines()) == len(before.text.splitlines())
    paths = {
        line.split('path="')[1].split('"')[0] for line in after.splitlines() if 'path="' in line
    }
    # route templates only; paths no route has never reach the app's middleware (404)
    assert paths == {"/translate", "/metrics", "/ready", "/schema/{path}"}, paths


# ---- cancellation at the engine layer (transformers engine; see the report) ---------------
@pytest.mark.slow
def test_cancelled_translation_frees_the_engine(tmp_path: Path, tiny_model_dir, tiny_adapter):
    """A cancelled request (what the web layer does when the client goes away) stops the
    engine's generation, in the greedy pass and in the markup retry, and the gauges
    read what the engine holds."""
    from service.schemas import TranslateItem
    from service.translator import open_translator

    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir))
    settings = Settings(
        registry=registry.root, engine="transformers", max_new_tokens_cap=1024, markup_retries=8
    )
    long = [
        TranslateItem(f"Call :func:`len` on ``x`` {i} " + "and more words " * 40) for i in range(4)
    ]

    async def cancel_when(translator, ready) -> float:
        job = asyncio.ensure_future(translator.translate(TranslateRequest(long)))
        deadline = time.monotonic() + 120
        while not ready() and not job.done():
            assert time.monotonic() < deadline, "generation never started"
            await asyncio.sleep(0.01)
        assert not job.done()
        started = time.monotonic()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return time.monotonic() - started

    async def scenario() -> None:
        async with open_translator(settings) as translator:
            engine, metrics = translator.engine, translator.metrics
            took = await cancel_when(translator, lambda: engine.pending() > 0)
            assert took < 5 and engine.pending() == 0 and translator.in_flight == 0
            assert metrics.queue_depth._value.get() == 0
            retried = metrics.markup_retries._value
            took = await cancel_when(translator, lambda: retried.get() > 0 and engine.pending() > 0)
            assert took < 5 and engine.pending() == 0 and translator.in_flight == 0

    asyncio.run(scenario())


# ---- processes: kill -9 and SIGTERM while loading (vLLM engine) ----------------------------
def _descendants(pid: int) -> set[int]:
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


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _engine_env() -> dict[str, str]:
    cores = len(os.sched_getaffinity(0))
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def _wait_for_engine_processes(proc: subprocess.Popen, limit: float = 300) -> set[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before its engine started"
        kids = _descendants(proc.pid)
        names = {Path(f"/proc/{k}/cmdline").read_bytes()[:40] for k in _alive(kids)}
        if any(b"VLLM::Worker" in n or b"VLLM::EngineCore" in n for n in names):
            return kids
        time.sleep(0.5)
    raise AssertionError("no vLLM engine process appeared")


@pytest.mark.slow
def test_killed_in_process_translate_po_leaves_no_engine(
    tmp_path: Path, tiny_model_dir, tiny_adapter
):
    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh-tw", tiny_adapter, base_model=str(tiny_model_dir))
    sample = tmp_path / "sample.po"
    sample.write_bytes((REPO / "examples/sample.po").read_bytes())
    command = [sys.executable, "-m", "clients.translate_po", str(sample), "--registry",
               str(registry.root), "--engine", "vllm", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, env=_engine_env(), stderr=subprocess.DEVNULL)
    try:
        kids = _wait_for_engine_processes(proc)
        time.sleep(2)  # the workers too
        kids |= _descendants(proc.pid)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while _alive(kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(kids), "engine processes survived translate-po"
    finally:
        for pid in _alive(_descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_while_the_engine_loads_stops_quickly(tmp_path: Path, tiny_model_dir, tiny_adapter):
    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir))
    port = free_port()
    env = {**_engine_env(), "POLINGO_REGISTRY": str(registry.root), "POLINGO_ENGINE": "vllm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        kids = _wait_for_engine_processes(proc)
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 503  # still loading
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert time.monotonic() - started < 10
        # uvicorn re-raises the SIGTERM once shut down: the process ends by it
        assert proc.returncode in (0, -signal.SIGTERM), proc.stderr.read()[-2000:]
        deadline = time.monotonic() + 10
        while _alive(kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(kids)
    finally:
        if proc.poll() is None:
            proc.kill()
