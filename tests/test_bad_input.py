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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from conftest import SNAPSHOTS
from test_service_helpers import REPO, add_version, descendants, free_port, running_service

from core.markup import check_translation
from core.registry import Registry, RegistryError, parse_ref
from core.settings import Settings
from service.schemas import TranslateRequest

EVIL_REFS = ["/tmp/evil@v1", "../evil@v1", "/tmp/./evil@v1", "//tmp/evil@v1", "zh@1", "zh@v1/x"]


# ---- adapter references ---------------------------------------------------------------
@pytest.mark.parametrize(
    "ref", [*EVIL_REFS, "", ".hidden", "a" * 65, "zh@", "zh@v", "zh-tw\n", "zh-tw@v1\n"]
)
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


def _manifest(name: str, version: str) -> bytes:
    from core.prompt import PromptContract
    from core.registry import DataSummary, Manifest

    data = DataSummary(fingerprint="test", source="tests")
    manifest = Manifest(
        name=name, version=version, base_model="tiny", contract=PromptContract(), data=data
    )
    return msgspec.json.encode(manifest)


def _bare_registry(root: Path, versions: list[str]) -> Registry:
    """Versions with a manifest and nothing else (what the registry itself looks at)."""
    registry = Registry(root)
    for version in versions:
        (registry.folder("zh") / version).mkdir(parents=True)
        (registry.folder("zh") / version / "manifest.json").write_bytes(_manifest("zh", version))
    return registry


def test_rollback_skips_a_version_whose_folder_was_removed(tmp_path: Path) -> None:
    # the shipped registry keeps v1 and the current version, not every one between
    registry = _bare_registry(tmp_path / "registry", ["v1", "v2", "v3"])
    for version in ("v1", "v2", "v3"):
        registry.promote(f"zh@{version}")
    (registry.folder("zh") / "v2" / "manifest.json").unlink()
    assert registry.rollback("zh") == "v1" and registry.current("zh") == "v1"
    assert registry.history("zh")[-1]["reason"] == "rollback from v3"
    (registry.folder("zh") / "v3" / "manifest.json").unlink()
    registry.promote("zh@v1")  # v1 after v1: nothing earlier that exists
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("zh")


@pytest.mark.parametrize(
    ("pointer", "words"),
    [(b"v9\n", "names 'v9', which is not a version"), (b"", "names ''"),
     (b"\xff\xfe", "unreadable"), (None, "no CURRENT file")],
)  # fmt: skip
def test_a_broken_current_is_an_error_not_the_newest_version(
    pointer: bytes | None, words: str, tmp_path: Path
) -> None:
    """40.1/40.2: v4 was never promoted; a broken CURRENT must not make it current."""
    registry = _bare_registry(tmp_path / "registry", ["v1", "v3", "v4"])
    registry.promote("zh@v3")
    current = registry.folder("zh") / "CURRENT"
    if pointer is None:
        current.unlink()
    else:
        current.write_bytes(pointer)
    with pytest.raises(RegistryError, match=words):
        registry.resolve("zh")
    assert registry.current("zh") is None  # no exception: /adapters lists them all
    assert registry.resolve("zh@v4") == ("zh", "v4")  # a named version still resolves


def test_promote_refuses_a_version_with_a_broken_manifest(tmp_path: Path, capsys) -> None:
    """40.16: promote exits non-zero and leaves CURRENT; list names the bad one, lists the rest."""
    from cli.main import main

    registry = _bare_registry(tmp_path / "registry", ["v1", "v2"])
    registry.promote("zh@v1")
    (registry.folder("zh") / "v2" / "manifest.json").write_text('{"name": "zh", "vers')
    assert main(["adapters", "--registry", str(registry.root), "promote", "zh@v2"]) == 2
    assert "zh@v2 cannot be promoted" in capsys.readouterr().err
    assert registry.current("zh") == "v1"
    assert main(["adapters", "--registry", str(registry.root), "list"]) == 1
    out, err = capsys.readouterr()
    assert "* zh@v1" in out and "zh@v2" not in out
    assert "! zh@v2  unreadable manifest" in err


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


def test_api_key_file_gives_its_first_line_only(tmp_path: Path) -> None:
    """40.17: the docs say the first line; the rest (a comment) is not part of the key."""
    key_file = tmp_path / "key"
    key_file.write_text("s3cret \n# rotated 2026-12-01\n")
    assert Settings.from_env({"POLINGO_API_KEY_FILE": str(key_file)}).api_key == "s3cret"


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://[::1", "ftp://host", "host:80"])
def test_translate_po_refuses_a_bad_server_url(url: str, tmp_path: Path, capsys) -> None:
    """40.14: a clear message and exit 2, not an OverflowError or InvalidURL traceback."""
    from clients.translate_po import main

    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--server", url])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--server" in err and url in err and "Traceback" not in err


def test_a_catalog_named_like_an_option_is_checked(tmp_path: Path, monkeypatch) -> None:
    """40.13: `translate-po -- -o.po`: the path reaches msgfmt as a file, not an option."""
    from core.catalogs import read_checked

    monkeypatch.chdir(tmp_path)
    good = (REPO / "examples/sample.po").read_bytes()
    Path("-o.po").write_bytes(good)
    assert read_checked(Path("-o.po")) == good
    assert not Path(".po").exists()  # msgfmt did not take ".po" as its output file


def test_crlf_catalog_keeps_its_line_endings(tmp_path: Path) -> None:
    """40.12: a CRLF catalog stays CRLF (only the filled entry's lines change)."""
    from clients.filesafe import CatalogLock
    from clients.filling import load_catalog
    from clients.writer import write_catalog

    path = tmp_path / "crlf.po"
    lf = (REPO / "examples/sample.po").read_bytes()
    path.write_bytes(lf.replace(b"\n", b"\r\n"))
    with CatalogLock(path):
        catalog = load_catalog(path)
        unit = catalog.units(include_fuzzy=False)[0]
        catalog.fill(unit, ["譯文" for _ in unit.texts], fuzzy=True, notes=[])
        unit.status = "filled"
        write_catalog(catalog, [unit], on_invalid="fuzzy")
    written = path.read_bytes()
    assert written.count(b"\n") == written.count(b"\r\n") > 10
    assert "譯文".encode() in written
    check = subprocess.run(["msgfmt", "--check", "-o", os.devnull, str(path)])
    assert check.returncode == 0


def test_a_full_disk_while_locking_leaves_no_lock_file(tmp_path: Path, monkeypatch) -> None:
    """40.15: the lock file is created, then writing the pid into it fails (ENOSPC)."""
    import errno

    from clients.filesafe import CatalogLock, lock_path

    path = tmp_path / "x.po"
    path.write_bytes((REPO / "examples/sample.po").read_bytes())

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match="No space left"):
        CatalogLock(path).acquire()
    assert not lock_path(path).exists()
    monkeypatch.undo()
    with CatalogLock(path):  # and the next run locks it as usual
        assert lock_path(path).exists()


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
        "POLINGO_HEADER_TIMEOUT": "2",
        "POLINGO_BODY_TIMEOUT": "2",
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
    ("[ x 100,000", {"content": b"[" * 100_000, "headers": JSON}, 422, "invalid_request", None,
     "nested too deeply"),
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
        httpx.delete(f"{service}/translate")  # 405
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
    # route templates only, and "other" for every path no route has (404, 405: logged
    # and counted too)
    assert paths == {"/translate", "/metrics", "/ready", "/schema/{path}", "other"}, paths
    assert 'path="other",status="404"' in after and 'path="other",status="405"' in after


@pytest.mark.slow
def test_http_host_rule_and_head(service: str) -> None:
    """40.11: bound to loopback, only loopback names as Host (a DNS-rebinding page gets
    400); 40.19: HEAD /health answers as GET does, without a body."""
    for path in ("/health", "/adapters"):
        assert httpx.get(service + path, headers={"host": "evil.example"}).status_code == 400
    response = _post(service, json={"items": [{"text": "Open"}]}, headers={"host": "evil.example"})
    assert response.status_code == 400
    port = service.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(service + "/health", headers={"host": host}).status_code == 200
    head = httpx.head(service + "/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "application/json"


def _raw(service: str, data: bytes) -> socket.socket:
    host, port = service.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(data)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server sent before it closed the connection (a 60 s socket timeout
    fails the test if it never does)."""
    received = b""
    with sock:
        while chunk := sock.recv(4096):
            received += chunk
    return received


@pytest.mark.slow
def test_http_slow_clients_are_cut_off_and_aborts_are_not_500(service: str) -> None:
    """40.10: a connection that sends half its headers, or half its body, is closed
    after the header or body timeout (2 s here); 40.6: a client that goes away mid-body
    counts as 499, never as a 500."""

    def count(status: str) -> float:
        text = httpx.get(service + "/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("polingo_requests_total{")
            and f'path="/translate",status="{status}"' in line
        )

    before_499, before_500 = count("499"), count("500")
    idle = _raw(service, b"")
    partial_headers = _raw(service, b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    head = (b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: 100\r\n\r\n")  # fmt: skip
    partial_body = _raw(service, head + b'{"items": [')
    assert _closed_by_server(idle) == b""
    assert _closed_by_server(partial_headers) == b""
    assert _closed_by_server(partial_body) == b""
    gone = _raw(service, head + b'{"items": [')
    time.sleep(0.5)
    gone.close()  # the client's own abort, mid-body
    deadline = time.monotonic() + 60
    while count("499") < before_499 + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count("499") == before_499 + 2  # the cut-off body and the abort
    assert count("500") == before_500


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
        kids = descendants(proc.pid)
        names = {Path(f"/proc/{k}/cmdline").read_bytes()[:40] for k in _alive(kids)}
        if any(b"VLLM::Worker" in n or b"VLLM::EngineCore" in n for n in names):
            return kids
        time.sleep(0.5)
    raise AssertionError("no vLLM engine process appeared")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["translate-po", "eval"])
def test_killed_in_process_command_leaves_no_engine(
    tmp_path: Path, tiny_model_dir, tiny_adapter, command: str
):
    registry = Registry(tmp_path / "registry")
    add_version(registry, "zh-tw", tiny_adapter, base_model=str(tiny_model_dir))
    sample = tmp_path / "sample.po"
    sample.write_bytes((REPO / "examples/sample.po").read_bytes())
    if command == "translate-po":
        command = [sys.executable, "-m", "clients.translate_po", str(sample), "--registry",
                   str(registry.root), "--engine", "vllm", "--no-progress"]  # fmt: skip
    else:  # polingo eval opens the engine itself, without translate-po's or serve's set-up
        command = [sys.executable, "-m", "cli.main", "eval", "--registry", str(registry.root),
                   "--adapter", "zh-tw", "--data", str(SNAPSHOTS / "2024-10-19"),
                   "--engine", "vllm", "--no-record"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, env=_engine_env(), stderr=subprocess.DEVNULL)
    kids: set[int] = set()
    try:
        kids |= _wait_for_engine_processes(proc)
        time.sleep(2)  # the workers too
        kids |= descendants(proc.pid)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while _alive(kids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(kids), f"engine processes survived {command[2:4]}"
    finally:  # a failure must not leave them running either
        for pid in _alive(kids | descendants(proc.pid)):
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
