"""translate-po against real catalogs, real msgcat/msgfmt/powrap/sphinx-lint, and a real
HTTP server on loopback that answers the service's schema with a FAKE, deterministic
translator: "譯：" + source (with "[msgctxt]" when there is a context), so every test can
tell which source went into which msgstr and markup always survives.

The real service (tiny model) is exercised in test_translate_po_service.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import polib
import pytest
from conftest import CORPUS

from clients.translate_po import main
from core.markup import check_translation, markup_items
from service.schemas import MAX_BATCH, TranslateRequest

DATA = CORPUS
REPO = Path(__file__).resolve().parents[1]

PREFIX = "譯："


def fake_translate(text: str, msgctxt: str | None) -> str:
    if "EMPTYME" in text:
        return ""
    if "BREAKME" in text:  # drop the markup, like a bad model
        for item in markup_items(text):
            text = text.replace(item, "")
    if "DROPFMT" in text:  # lose a C placeholder that core.markup does not know
        text = text.replace("%lu", "")
    if "GLUE" in text:  # glue Chinese to an inline literal: only sphinx-lint notices
        text = text.replace("`` ", "``")
    ctx = f"[{msgctxt}]" if msgctxt else ""
    return f"{PREFIX}{ctx}{text}"


UPDATED = "（已更新）"


def fake_update(text: str, previous_translation: str) -> str:
    """Update mode: the previous translation, marked, unless the new source says otherwise."""
    if "KEEPME" in text:  # the old translation still fits
        return previous_translation
    if "BREAKME" in text:  # lose the markup of the previous translation
        for item in markup_items(previous_translation):
            previous_translation = previous_translation.replace(item, "")
    return previous_translation + UPDATED


def expected(text: str, msgctxt: str | None = None) -> str:
    return fake_translate(text, msgctxt)


class FakeTranslationService:
    """POST /translate and GET /health on 127.0.0.1 with the real request/response
    schema and error envelope; can answer 503 + Retry-After, or answer slowly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[TranslateRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.overload_next = 0  # answer this many requests 503
        self.delay_s = 0.0
        self.max_batch = MAX_BATCH  # a service configured with smaller batches answers 422
        self.rejected = 0
        self.loading = 0  # answer GET /ready 503 "not_ready" this many times
        self.failed = False  # ... or always, as a service whose engine failed
        self.gone = False
        self.confidence: Callable[[str], float] | None = None  # answers carry one when set
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/ready" and (service.loading or service.failed):
                    service.loading = max(0, service.loading - 1)
                    reason = "the engine failed to start: boom" if service.failed else "loading"
                    error = {"message": reason, "type": "not_ready", "param": None, "code": 503}
                    self._send(503, {"error": error}, {"Retry-After": "0"})
                    return
                self._send(200, {"status": "ready"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if service.gone:  # shut down: drop kept-alive connections unanswered
                    self.close_connection = True
                    return
                try:
                    request = msgspec.json.decode(body, type=TranslateRequest)
                except msgspec.ValidationError as exc:
                    error = {
                        "message": str(exc),
                        "type": "invalid_request",
                        "param": None,
                        "code": 422,
                    }
                    self._send(422, {"error": error})
                    return
                if len(request.items) > service.max_batch:
                    service.rejected += 1
                    size, limit = len(request.items), service.max_batch
                    message = f"batch of {size} items exceeds the limit of {limit}"
                    error = {
                        "message": message,
                        "type": "invalid_request",
                        "param": "items",
                        "code": 422,
                    }
                    self._send(422, {"error": error})
                    return
                with service.lock:
                    if service.overload_next > 0:
                        service.overload_next -= 1
                        overloaded = True
                    else:
                        overloaded = False
                        service.requests.append(request)
                        service.in_flight += 1
                        service.max_in_flight = max(service.max_in_flight, service.in_flight)
                if overloaded:
                    error = {
                        "message": "queue full",
                        "type": "overloaded",
                        "param": None,
                        "code": 503,
                    }
                    self._send(503, {"error": error}, {"Retry-After": "0"})
                    return
                try:
                    time.sleep(service.delay_s)
                    answers = []
                    for item in request.items:
                        if item.previous_translation is not None:
                            out = fake_update(item.text, item.previous_translation)
                        else:
                            out = fake_translate(item.text, item.msgctxt)
                        answers.append(
                            {
                                "text": out,
                                "adapter": "fake@v1",
                                "from_memory": False,
                                "warnings": check_translation(item.text, out),
                            }
                        )
                        if service.confidence is not None:
                            answers[-1]["confidence"] = service.confidence(item.text)
                    self._send(200, {"translations": answers})
                finally:
                    with service.lock:
                        service.in_flight -= 1

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTranslationService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gone = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake() -> FakeTranslationService:
    with FakeTranslationService() as service:
        yield service


def copy_catalog(tmp_path: Path, relative: str) -> Path:
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / relative, target)
    target.chmod(0o644)
    return target


def needs(entry: polib.POEntry, include_fuzzy: bool = False) -> bool:
    if entry.obsolete or not entry.msgid:
        return False
    if entry.fuzzy:
        return include_fuzzy
    return not entry.translated()


def check_tools(path: Path, original: Path | None = None) -> None:
    """powrap --check, msgfmt --check, and no sphinx-lint error the original lacks."""
    assert subprocess.run(["powrap", "--check", "--quiet", str(path)]).returncode == 0
    done = subprocess.run(
        ["msgfmt", "--check", "-o", os.devnull, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    after = lint(path)
    before = lint(original) if original else []
    assert sorted(set(after) - set(before)) == []


def lint(path: Path) -> list[str]:
    done = subprocess.run(["sphinx-lint", str(path)], capture_output=True, text=True)
    # "file:line: message (checker)" -> message (checker): line numbers move with wrapping
    return [ln.split(":", 2)[-1] for ln in done.stderr.splitlines() if ln.strip()]


def run_cli(*args: str) -> int:
    return main([*args, "--no-progress"])


PLURAL_PO = """\
# A small catalog made for the plural tests.
msgid ""
msgstr ""
"Project-Id-Version: test\\n"
"Language: fr\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"
"Plural-Forms: nplurals=2; plural=(n > 1);\\n"

#: a.py:1
#, python-format
msgid "%d file was copied"
msgid_plural "%d files were copied"
msgstr[0] ""
msgstr[1] ""

#: a.py:2
msgid "one item"
msgid_plural "many items"
msgstr[0] "un élément"
msgstr[1] ""

msgctxt "menu"
msgid "Open"
msgstr ""

msgid "Open"
msgstr "Ouvrir"

#, fuzzy
#| msgid "Old text"
msgid "New text"
msgstr "Vieux texte"

msgid "Ends with a newline\\n"
msgstr ""

#~ msgid "Gone"
#~ msgstr "Parti"
"""


def entry_state(entry: polib.POEntry) -> tuple:
    return (
        entry.msgctxt,
        entry.msgid,
        entry.msgid_plural,
        entry.msgstr,
        dict(entry.msgstr_plural),
        entry.occurrences,
        entry.comment,
        entry.tcomment,
        entry.flags,
        entry.previous_msgid,
        entry.obsolete,
    )


def test_real_catalogs_filled_batched_and_valid(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    names = ["library/functions.po", "library/copy.po", "library/asyncio-runner.po"]
    paths = [copy_catalog(tmp_path / "po", name) for name in names]
    paths[1].chmod(0o640)
    before = {p: polib.pofile(str(p)) for p in paths}
    assert run_cli(str(tmp_path / "po"), "--server", fake.url) == 0
    filled = 0
    for path in paths:
        old, new = before[path], polib.pofile(str(path))
        assert new.header == old.header and new.metadata == old.metadata
        assert [(e.msgctxt, e.msgid, e.obsolete) for e in new] == [
            (e.msgctxt, e.msgid, e.obsolete) for e in old
        ]
        for a, b in zip(old, new, strict=True):
            if needs(a):
                filled += 1
                assert b.msgstr == expected(a.msgid, a.msgctxt)
                assert b.flags[0] == "fuzzy" and b.flags[1:] == a.flags
                assert (b.occurrences, b.comment, b.tcomment) == (
                    a.occurrences,
                    a.comment,
                    a.tcomment,
                )
            else:
                assert entry_state(b) == entry_state(a)
        check_tools(path, DATA / names[paths.index(path)])
        # byte for byte: every block (entry) but the filled ones is the original's
        blocks = zip(
            (DATA / names[paths.index(path)]).read_text(encoding="utf-8").split("\n\n"),
            path.read_text(encoding="utf-8").split("\n\n"),
            strict=True,
        )
        changed = [b for a, b in blocks if a != b]
        assert len(changed) == sum(map(needs, old))
        assert all("#, fuzzy" in b and f'"{PREFIX}' in b for b in changed)
    assert not list((tmp_path / "po").rglob("*.lock")) and not list(
        (tmp_path / "po").rglob(".*tmp")
    )
    assert stat_mode(paths[1]) == 0o640 and stat_mode(paths[0]) == 0o644
    # batches, not one entry a request: at most ceil(n / MAX_BATCH) requests per file
    sent = sum(len(r.items) for r in fake.requests)
    assert sent == filled
    assert max(len(r.items) for r in fake.requests) <= MAX_BATCH
    assert len(fake.requests) <= sum(-(-sum(map(needs, before[p])) // MAX_BATCH) for p in paths)
    # a rerun finds nothing left to do and leaves the files as they are
    snapshot = {p: p.read_bytes() for p in paths}
    assert run_cli(*map(str, paths), "--server", fake.url) == 0
    assert {p: p.read_bytes() for p in paths} == snapshot


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_include_fuzzy_no_fuzzy_keeps_tools_clean(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    old = polib.pofile(str(path))
    redo = [e for e in old if e.fuzzy and not e.obsolete]
    assert redo, "the sample needs fuzzy entries"
    assert run_cli(str(path), "--server", fake.url, "--include-fuzzy", "--no-fuzzy") == 0
    new = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}
    for entry in old:
        after = new[(entry.msgctxt, entry.msgid)]
        if needs(entry, include_fuzzy=True):
            assert after.msgstr == expected(entry.msgid, entry.msgctxt)
            assert "fuzzy" not in after.flags and after.previous_msgid is None
    check_tools(path, DATA / "library/copy.po")  # sphinx-lint now reads the new entries


def test_plural_context_newlines_and_obsolete(tmp_path: Path, fake: FakeTranslationService) -> None:
    path = tmp_path / "plural.po"
    path.write_text(PLURAL_PO, encoding="utf-8")
    # (the fuzzy entry's update is tests/test_updates.py's)
    assert run_cli(str(path), "--server", fake.url, "--no-fuzzy", "--no-update-fuzzy") == 0
    po = polib.pofile(str(path))
    copied, named, menu_open, plain_open, fuzzy, newline = po[:6]
    assert copied.msgstr_plural == {
        0: expected("%d file was copied"),
        1: expected("%d files were copied"),
    }
    assert named.msgstr_plural == {0: "un élément", 1: expected("many items")}  # kept form 0
    assert menu_open.msgstr == expected("Open", "menu")  # the context travelled
    assert plain_open.msgstr == "Ouvrir"
    assert fuzzy.msgstr == "Vieux texte" and fuzzy.fuzzy and fuzzy.previous_msgid == "Old text"
    assert newline.msgstr.endswith("\n")
    assert [e.msgid for e in po.obsolete_entries()] == ["Gone"]
    assert po.header == "A small catalog made for the plural tests."
    check_tools(path)
    # one plural form (zh_TW): msgstr[0] translates msgid_plural
    head = PLURAL_PO[: PLURAL_PO.index("#: a.py:2")].replace(
        "nplurals=2; plural=(n > 1)", "nplurals=1; plural=0"
    )
    path.write_text(head.replace('msgstr[1] ""\n', ""), encoding="utf-8")
    assert run_cli(str(path), "--server", fake.url) == 0
    entry = polib.pofile(str(path))[0]
    assert entry.msgstr_plural == {0: expected("%d files were copied")} and entry.fuzzy
    check_tools(path)


SMALL_PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: zh_TW\\n"
"Plural-Forms: nplurals=1; plural=0;\\n"

msgid "Call :func:`len` BREAKME on ``x``."
msgstr ""

msgid "Plain sentence."
msgstr ""

msgid "EMPTYME please"
msgstr ""
"""


def test_on_invalid_fuzzy_and_skip_and_failures(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    path = tmp_path / "small.po"
    path.write_text(SMALL_PO, encoding="utf-8")
    assert run_cli(str(path), "--server", fake.url, "--no-fuzzy") == 1  # EMPTYME failed
    broken, plain, empty = polib.pofile(str(path))
    assert (
        broken.fuzzy
        and "polingo: markup lost:" in broken.tcomment
        and ":func:`len`" in broken.tcomment
    )
    assert plain.msgstr == expected("Plain sentence.") and not plain.fuzzy
    assert empty.msgstr == ""
    out = capsys.readouterr()
    assert "flagged 1" in out.out and "failed 1" in out.out and "empty translation" in out.err
    path.write_text(SMALL_PO, encoding="utf-8")
    assert run_cli(str(path), "--server", fake.url, "--on-invalid", "skip", "--show", "3") == 1
    broken, plain, _ = polib.pofile(str(path))
    assert broken.msgstr == "" and not broken.fuzzy and not broken.tcomment
    assert plain.msgstr == expected("Plain sentence.") and plain.fuzzy
    out = capsys.readouterr().out
    assert "skipped 1" in out
    assert f"small.po:{plain.linenum} (fuzzy)\n  en: Plain sentence.\n  zh: {plain.msgstr}" in out
    check_tools(path)


TOOLS_PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: zh_TW\\n"
"Plural-Forms: nplurals=1; plural=0;\\n"

#, c-format
msgid "DROPFMT wrote %lu bytes"
msgstr ""

msgid "Use ``x`` now GLUE."
msgstr ""

msgid "Clean sentence."
msgstr ""
"""


def test_output_rejected_by_msgfmt_or_sphinx_lint(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    path = tmp_path / "tools.po"
    path.write_text(TOOLS_PO, encoding="utf-8")
    assert run_cli(str(path), "--server", fake.url, "--no-fuzzy") == 0
    fmt, glue, clean = polib.pofile(str(path))
    assert fmt.fuzzy and fmt.msgstr == expected(fmt.msgid) and "polingo: msgfmt:" in fmt.tcomment
    assert glue.fuzzy and "polingo: sphinx-lint:" in glue.tcomment and "``x``now" in glue.msgstr
    assert not clean.fuzzy and clean.msgstr == expected("Clean sentence.")
    header = TOOLS_PO[: TOOLS_PO.index("\n\n") + 2]  # its own key order, no comment added
    assert path.read_text(encoding="utf-8").startswith(header)
    check_tools(path)
    path.write_text(TOOLS_PO, encoding="utf-8")
    assert run_cli(str(path), "--server", fake.url, "--no-fuzzy", "--on-invalid", "skip") == 0
    fmt, glue, clean = polib.pofile(str(path))
    assert (fmt.msgstr, glue.msgstr, fmt.tcomment, glue.tcomment) == ("", "", "", "")
    assert clean.msgstr == expected("Clean sentence.")
    check_tools(path)


def test_dry_run_lists_and_touches_nothing(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    data = path.read_bytes()
    assert run_cli(str(path), "--dry-run", "--include-fuzzy", "--server", "http://127.0.0.1:9") == 0
    out = capsys.readouterr().out
    todo = [e for e in polib.pofile(str(path)) if needs(e, include_fuzzy=True)]
    assert f"would fill {len(todo)} entries in 1 of 1 files" in out
    assert f"{path}:{todo[0].linenum}:" in out and "(fuzzy, redo)" in out
    assert path.read_bytes() == data and fake.requests == []


def test_malformed_catalog_names_file_and_line(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    good = copy_catalog(tmp_path, "library/copy.po")
    bad = tmp_path / "bad.po"
    bad.write_text(PLURAL_PO.replace('msgctxt "menu"', "msgctxt menu"), encoding="utf-8")
    data = good.read_bytes()
    assert run_cli(str(tmp_path), "--server", fake.url) == 2
    err = capsys.readouterr().err
    line = PLURAL_PO.splitlines().index('msgctxt "menu"') + 1
    assert f"bad.po:{line}:" in err and "nothing was written" in err
    assert good.read_bytes() == data and fake.requests == []
    assert run_cli(str(tmp_path / "missing.po"), "--server", fake.url) == 2
    assert "no such file" in capsys.readouterr().err


def test_unreachable_server_writes_nothing(tmp_path: Path, capsys) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    data = path.read_bytes()
    assert run_cli(str(path), "--server", "http://127.0.0.1:9", "--retries", "0") == 2
    err = capsys.readouterr().err
    assert "cannot reach the translation service at http://127.0.0.1:9" in err
    assert "nothing was written" in err
    assert path.read_bytes() == data and sorted(p.name for p in tmp_path.rglob("*")) == [
        "copy.po",
        "library",
    ]


def test_overloaded_service_is_retried_then_given_up(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    fake.overload_next = 3
    assert run_cli(str(path), "--server", fake.url, "--retries", "3") == 0
    assert fake.overload_next == 0 and all(
        e.translated() or e.fuzzy for e in polib.pofile(str(path))
    )
    path = copy_catalog(tmp_path / "again", "library/copy.po")
    data = path.read_bytes()
    fake.overload_next = 100
    assert run_cli(str(path), "--server", fake.url, "--retries", "2") == 1
    assert "gave up after 3 attempts" in capsys.readouterr().err
    assert fake.overload_next == 97 and path.read_bytes() == data


def test_waits_for_a_loading_service_not_for_a_failed_one(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    fake.loading = 3
    assert run_cli(str(path), "--server", fake.url) == 0
    assert fake.loading == 0 and "waiting for the service" in capsys.readouterr().err
    path = copy_catalog(tmp_path / "again", "library/copy.po")
    data = path.read_bytes()
    fake.failed = True
    assert run_cli(str(path), "--server", fake.url) == 2
    err = capsys.readouterr().err
    assert "failed to start: boom" in err and "nothing was written" in err
    assert path.read_bytes() == data


def test_smaller_service_batch_limit_is_learned(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    fake.max_batch = 10
    assert run_cli(str(path), "--server", fake.url, "--jobs", "1") == 0
    assert fake.rejected == 1 and max(len(r.items) for r in fake.requests) == 10
    assert all(e.translated() or e.fuzzy for e in polib.pofile(str(path)) if not e.obsolete)


def test_requests_in_flight_at_once(tmp_path: Path, fake: FakeTranslationService) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    fake.delay_s = 0.3
    assert run_cli(str(path), "--server", fake.url, "--batch-size", "8", "--jobs", "4") == 0
    assert fake.max_in_flight > 1 and max(len(r.items) for r in fake.requests) == 8


# ---- several processes: interruption, kills, concurrent runs, edits meanwhile ----


def start(path: Path, fake: FakeTranslationService, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "clients.translate_po",
        str(path),
        "--server",
        fake.url,
        "--no-progress",
    ]
    return subprocess.Popen(
        [*command, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background job (CI, `cmd &`) inherits SIGINT ignored, and Python then keeps it
        # ignored; a terminal's Ctrl-C is what this simulates, so restore the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_until(condition, what: str, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def filled_entries(path: Path, original: list[polib.POEntry]) -> int:
    """Check that each entry is either as it was or filled with its own translation."""
    new = polib.pofile(str(path))
    count = 0
    for old, entry in zip(original, new, strict=True):
        if needs(old) and entry.msgstr:
            assert entry.msgstr == expected(old.msgid, old.msgctxt) and entry.fuzzy
            count += 1
        else:
            assert entry_state(entry) == entry_state(old)
    return count


def no_leftovers(folder: Path) -> None:
    assert not list(folder.glob("*.lock")) and not list(folder.glob(".*polingo-tmp"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_answered_entries_and_rerun_finishes(
    tmp_path: Path, fake: FakeTranslationService, signum: int
) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    original = list(polib.pofile(str(path)))
    todo = sum(map(needs, original))
    fake.delay_s = 0.3
    proc = start(path, fake, "--batch-size", "4", "--jobs", "2", "--checkpoint-every", "1000")
    wait_until(lambda: len(fake.requests) >= 6, "some answered requests")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    done = filled_entries(path.parent / "functions.po", original)
    assert 8 <= done < todo  # the answers got written although no checkpoint was due
    check_tools(path, DATA / "library/functions.po")
    no_leftovers(path.parent)
    fake.delay_s = 0.0
    assert run_cli(str(path), "--server", fake.url) == 0
    assert filled_entries(path, original) == todo


def test_sigkill_leaves_old_or_complete_file_and_rerun_finishes(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    original = list(polib.pofile(str(path)))
    todo = sum(map(needs, original))
    fake.delay_s = 0.05
    done = 0
    for after in (3, 6, 10):  # kill at different points of the run, checkpoints every 4 entries
        seen = len(fake.requests)
        proc = start(path, fake, "--batch-size", "2", "--jobs", "2", "--checkpoint-every", "4")
        wait_until(lambda a=after, s=seen: len(fake.requests) >= s + a, "requests")
        proc.kill()
        proc.wait(timeout=60)
        check_tools(path, DATA / "library/functions.po")  # readable and valid after each kill
        now = filled_entries(path, original)
        assert now >= done  # a rerun keeps what the run before saved
        done = now
    assert 0 < done < todo
    (path.parent / f".{path.name}.stale{'.polingo-tmp'}").write_text("half-written")
    assert run_cli(str(path), "--server", fake.url) == 0
    assert filled_entries(path, original) == todo
    no_leftovers(path.parent)


def test_second_run_on_a_locked_file_fails_clearly(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    original = list(polib.pofile(str(path)))
    fake.delay_s = 0.5  # the first run holds the lock for seconds
    first = start(path, fake, "--batch-size", "8")
    wait_until(
        lambda: (path.parent / "functions.po.lock").exists() and fake.requests, "the first run"
    )
    assert run_cli(str(path), "--server", fake.url) == 1
    captured = capsys.readouterr()
    assert "another translate-po run (pid" in captured.err and "NOT DONE" in captured.out
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert filled_entries(path, original) == sum(map(needs, original))
    check_tools(path, DATA / "library/functions.po")
    no_leftovers(path.parent)


def test_service_gone_mid_run_keeps_answers_and_exits_1(tmp_path: Path) -> None:
    path = copy_catalog(tmp_path, "library/functions.po")
    original = list(polib.pofile(str(path)))
    with FakeTranslationService() as fake:
        fake.delay_s = 0.2
        proc = start(path, fake, "--batch-size", "4", "--jobs", "1", "--retries", "1")
        wait_until(lambda: len(fake.requests) >= 3, "some answered requests")
    out, err = proc.communicate(timeout=120)  # the service is gone
    assert proc.returncode == 1, err
    assert "cannot reach the translation service" in err and "stopped early" in err
    done = filled_entries(path, original)
    assert 8 <= done < sum(map(needs, original))
    check_tools(path, DATA / "library/functions.po")
    no_leftovers(path.parent)


def test_file_changed_meanwhile_is_not_overwritten(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    path = copy_catalog(tmp_path, "library/copy.po")
    fake.delay_s = 1.0
    proc = start(path, fake, "--batch-size", "2", "--checkpoint-every", "0")
    wait_until(lambda: fake.requests, "the first request")
    edited = path.read_text(encoding="utf-8").replace('msgstr ""\n\n', 'msgstr "人工翻譯"\n\n', 1)
    path.write_text(edited, encoding="utf-8")  # a person saves the file meanwhile
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "changed on disk" in err and "NOT DONE" in out
    assert path.read_text(encoding="utf-8") == edited
    no_leftovers(path.parent)


def test_file_changed_after_the_survey_is_read_again(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    # translate-po keeps the catalogs its survey read; one changed before the run
    # reaches it must be read again (here a person translated its one empty entry)
    first = copy_catalog(tmp_path, "library/copy.po")
    later = copy_catalog(tmp_path, "tutorial/errors.po")
    fake.delay_s = 1.0
    proc = start(tmp_path, fake, "-j", "1", "--batch-size", "1", "--checkpoint-every", "0")
    wait_until(lambda: fake.requests, "the first request")
    po = polib.pofile(str(later))
    (todo,) = [e for e in po if needs(e)]
    todo.msgstr = "人工翻譯"
    po.save()
    edited = later.read_text(encoding="utf-8")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert later.read_text(encoding="utf-8") == edited
    assert not any(todo.msgid in [i.text for i in r.items] for r in fake.requests)
    assert not [e for e in polib.pofile(str(first)) if needs(e)]


def test_symlinked_catalog_keeps_its_link(tmp_path: Path, fake: FakeTranslationService) -> None:
    target = copy_catalog(tmp_path / "real", "library/copy.po")
    link = tmp_path / "link.po"
    link.symlink_to(target)
    assert run_cli(str(link), "--server", fake.url) == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert filled_entries(target, list(polib.pofile(str(DATA / "library/copy.po")))) > 0
    no_leftovers(target.parent)
    no_leftovers(tmp_path)


def test_failed_rename_leaves_file_untouched(tmp_path: Path, monkeypatch) -> None:
    from clients import filesafe

    path = copy_catalog(tmp_path, "library/copy.po")
    data = path.read_bytes()
    fingerprint = filesafe.Fingerprint.of(path)

    def crash(*args: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(filesafe.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        filesafe.atomic_replace(path, b"new", fingerprint)
    assert path.read_bytes() == data
    no_leftovers(path.parent)


def test_confidence_is_written_and_min_confidence_leaves_drafts_out(
    tmp_path: Path, fake: FakeTranslationService
) -> None:
    """Each draft gets '# polingo: confidence X' beside polingo's other comments;
    --min-confidence leaves the drafts below it untranslated (and untouched)."""
    path = copy_catalog(tmp_path, "library/copy.po")
    original = polib.pofile(str(path))
    wanted = [e for e in original if needs(e)]
    low = {e.msgid for e in wanted[::2]}  # every other draft is unsure
    fake.confidence = lambda text: 0.31 if text in low else 0.874
    assert run_cli(str(path), "--server", fake.url, "--min-confidence", "0.5") == 0
    after = {e.msgid: e for e in polib.pofile(str(path))}
    for entry in wanted:
        new = after[entry.msgid]
        if entry.msgid in low:
            assert entry_state(new) == entry_state(entry)  # left as it was
        else:
            assert new.msgstr == expected(entry.msgid) and new.fuzzy
            notes = [n for n in new.tcomment.splitlines() if n.startswith("polingo: ")]
            assert notes[-1] == "polingo: confidence 0.87"
    check_tools(path, DATA / "library/copy.po")
    # without the threshold the rest is filled too, each with its confidence
    assert run_cli(str(path), "--server", fake.url) == 0
    lines = [e.tcomment for e in polib.pofile(str(path)) if e.msgid in low]
    assert lines and all(t.endswith("polingo: confidence 0.31") for t in lines)


def test_min_confidence_leaves_out_drafts_without_a_confidence(
    tmp_path: Path, fake: FakeTranslationService, capsys
) -> None:
    """A service with POLINGO_CONFIDENCE off answers no confidence: --min-confidence
    cannot judge those drafts, so it leaves them untranslated and says why."""
    path = copy_catalog(tmp_path, "library/copy.po")
    before = path.read_bytes()
    assert fake.confidence is None  # the fake's answers carry no confidence
    assert run_cli(str(path), "--server", fake.url, "--min-confidence", "0.5", "--show", "3") == 0
    assert path.read_bytes() == before
    shown = capsys.readouterr()
    assert "skipped 5" in shown.out
    assert "skipped: the service gave no confidence to judge by --min-confidence" in shown.err


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high"])
def test_min_confidence_must_lie_between_0_and_1(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["x.po", "--min-confidence", value])
    assert exit_.value.code == 2 and "not a number from 0 to 1" in capsys.readouterr().err
