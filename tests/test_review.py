"""polingo review: the HTTP API on real catalogs, the review log and what training does
with it, and a real browser (Debian's chromium + chromedriver, Selenium) going through
catalogs with the keyboard against the real server on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import polib
import pytest
from conftest import CORPUS
from litestar.testing import TestClient

from cli.main import build_parser, main
from clients.filesafe import CatalogLock
from core.defaults import packaged_registry
from review import log
from review.app import create_app
from review.cli import catalogs, prepare
from review.decisions import Reviewer
from review.entries import MemoryContext, entry_id, entry_rev, needs_review
from testkit import browser_binaries, free_port

ERRORS = "tutorial/errors.po"  # 14 fuzzy human drafts, none with sphinx-lint findings
CONTROLFLOW = "tutorial/controlflow.po"  # 10 fuzzy drafts, 7 with markup warnings


@pytest.fixture(scope="module")
def memory() -> MemoryContext:
    return MemoryContext.from_registry(packaged_registry(), "zh-tw")


def copy(tmp_path: Path, relative: str) -> Path:
    target = tmp_path / "docs" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CORPUS / relative, target)
    return target


def pending(path: Path) -> list[polib.POEntry]:
    return [e for e in polib.pofile(str(path)) if needs_review(e)]


def state(path: Path) -> dict[tuple[str | None, str], tuple]:
    return {
        (e.msgctxt, e.msgid): (e.msgstr, tuple(e.flags), e.tcomment, e.previous_msgid)
        for e in polib.pofile(str(path))
    }


def check_tools(path: Path) -> None:
    """msgfmt --check and powrap --check both pass."""
    done = subprocess.run(
        ["msgfmt", "--check", "-o", os.devnull, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    wrap = subprocess.run(["powrap", "--check", "--quiet", str(path)], capture_output=True)
    assert wrap.returncode == 0, wrap.stdout + wrap.stderr


def decide(client: TestClient, eid: str, rev: str, action: str, texts=None, fid: int = 0):
    body = {"action": action, "rev": rev} | ({"texts": texts} if texts is not None else {})
    return client.post(f"/api/files/{fid}/entries/{eid}", json=body)


@pytest.fixture
def reviewed(tmp_path: Path, memory: MemoryContext):
    path = copy(tmp_path, ERRORS)
    reviewer = Reviewer([path], tmp_path / "review-log.jsonl", memory)
    with TestClient(create_app(reviewer)) as client:
        yield path, reviewer, client


def test_accept_edit_reject_skip_change_exactly_those_entries(reviewed) -> None:
    path, reviewer, client = reviewed
    before = state(path)
    entries = pending(path)
    page = client.get("/files/0")
    assert page.status_code == 200
    assert page.text.count('class="entry') == len(entries) == 14
    assert '<span class="rst role">:keyword:`except`</span>' in page.text  # markup highlighted
    assert page.text.count('<details class="memory"') == 14  # the memory's neighbours

    first, second, third, fourth = entries[:4]
    answer = decide(client, entry_id(first), entry_rev(first), "accept")
    assert answer.status_code == 200, answer.text
    assert answer.json()["decision"] == "accepted"
    assert answer.json()["file"] == {"done": 1, "total": 14, "skipped": 0}
    edited = "這是譯者改過的譯文。"
    answer = decide(client, entry_id(second), entry_rev(second), "edit", [edited])
    assert answer.json()["decision"] == "edited" and answer.json()["texts"] == [edited]
    answer = decide(client, entry_id(third), entry_rev(third), "reject")
    assert answer.json()["decision"] == "rejected"
    answer = decide(client, entry_id(fourth), entry_rev(fourth), "skip")
    assert answer.json()["file"] == {"done": 3, "total": 14, "skipped": 1}

    after = state(path)
    changed = {k for k in before if before[k] != after[k]}
    keys = [(e.msgctxt, e.msgid) for e in (first, second, third)]
    assert changed == set(keys)
    assert after[keys[0]] == (first.msgstr, (), "", None)  # fuzzy gone, text kept
    assert after[keys[1]] == (edited, (), "", None)
    assert after[keys[2]] == ("", (), "", None)  # untranslated again, not fuzzy
    check_tools(path)

    records = list(log.read(reviewer.log_path))
    assert [r.decision for r in records] == ["accepted", "edited", "rejected"]
    assert [r.source for r in records] == [e.msgid for e in (first, second, third)]
    assert [r.draft for r in records] == [e.msgstr for e in (first, second, third)]
    assert [r.final for r in records] == [first.msgstr, edited, ""]
    assert all(r.file == str(path) and r.time for r in records)
    assert reviewer.next_file(0) == 0  # 10 left (and the skipped one)


def test_page_shows_warnings_and_highlights_lost_markup(tmp_path: Path, memory) -> None:
    path = copy(tmp_path, CONTROLFLOW)
    with TestClient(create_app(Reviewer([path], tmp_path / "log", memory))) as client:
        page = client.get("/files/0").text
    assert "<li>markup lost: :keyword:`!else`</li>" in page
    assert "<li>markup added: :keyword:`!pass`</li>" in page
    assert '<span class="rst role lost">:keyword:`!else`</span>' in page
    assert "<li>placeholders changed: -{num} -{num}</li>" in page


UPDATED_PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

# polingo: previous translation: "呼叫 :func:`len` 取得長度。"
#, fuzzy
#| msgid "Call :func:`len` for the length."
msgid "Call :func:`len` for the :term:`length`."
msgstr "呼叫 :func:`len` 取得\\\\ :term:`長度 <length>`。"

#, fuzzy
msgid "A draft without a previous translation."
msgstr "沒有先前翻譯的草稿。"
"""


def test_updated_entry_shows_both_diffs_and_restores_the_old_translation(
    tmp_path: Path, memory
) -> None:
    """Issue 41: an entry translate-po updated shows old -> new English and old -> draft
    translation; "restore" (key o) saves the previous translation, the rest as it was."""
    path = tmp_path / "updated.po"
    path.write_text(UPDATED_PO, encoding="utf-8")
    subprocess.run(["powrap", "--quiet", str(path)], check=True)
    log_path = tmp_path / "review-log.jsonl"
    with TestClient(create_app(Reviewer([path], log_path, memory))) as client:
        page = client.get("/files/0").text
        assert page.count('class="update"') == 1 and page.count('data-action="restore"') == 1
        # the English gained a :term: around a word the old translation already had
        assert "for the <ins>:term:`</ins>length<ins>`</ins>." in page
        assert "取得<ins>\\ :term:`</ins>長度<ins> &lt;length&gt;`</ins>。" in page
        assert "polingo: previous translation" not in page  # shown as the diff, no warning
        updated, plain = pending(path)
        other = decide(client, entry_id(plain), entry_rev(plain), "restore")
        assert other.status_code == 422 and "no previous translation" in other.text
        done = decide(client, entry_id(updated), entry_rev(updated), "restore")
        assert done.status_code == 200, done.text
        assert done.json()["decision"] == "restored"
        assert done.json()["texts"] == ["呼叫 :func:`len` 取得長度。"]
    entry = polib.pofile(str(path))[0]
    assert (entry.msgstr, entry.flags, entry.tcomment) == ("呼叫 :func:`len` 取得長度。", [], "")
    assert entry.previous_msgid is None and polib.pofile(str(path))[1].fuzzy
    check_tools(path)
    (record,) = log.read(log_path)
    assert record.decision == "restored" and record.final == "呼叫 :func:`len` 取得長度。"
    assert log.kept_share([record])["review_restored"] == 1


def test_log_appends_stay_whole_with_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "review-log.jsonl"
    text = "譯" * 3000  # records of several pages: a torn write would show
    record = log.ReviewRecord(
        time=log.now(),
        file="a.po",
        msgctxt=None,
        source="x" * 5000,
        draft=text,
        final=text,
        decision="accepted",
    )
    threads = [
        threading.Thread(target=lambda: [log.append(path, [record]) for _ in range(50)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(log.read(path)) == [record] * 200


def test_entry_changed_on_disk_is_refused_and_the_file_left_alone(reviewed) -> None:
    path, reviewer, client = reviewed
    target, other = pending(path)[:2]
    po = polib.pofile(str(path), wrapwidth=0)
    for entry in po:  # a translator's editor saves a fix of `target` meanwhile
        if entry.msgid == target.msgid:
            entry.msgstr = "在編輯器裡改好的譯文"
            entry.flags.remove("fuzzy")
    po.save(str(path))
    on_disk = path.read_bytes()
    answer = decide(client, entry_id(target), entry_rev(target), "accept")
    assert answer.status_code == 409
    assert "changed since the page showed it" in answer.json()["error"]["message"]
    assert path.read_bytes() == on_disk
    assert not reviewer.log_path.exists()
    # an edit of another entry still lands, and keeps the editor's change
    answer = decide(client, entry_id(other), entry_rev(other), "edit", ["另一個譯文"])
    assert answer.status_code == 200, answer.text
    after = state(path)
    assert after[(None, target.msgid)][0] == "在編輯器裡改好的譯文"
    assert after[(None, other.msgid)][0] == "另一個譯文"
    # the second tab, which still shows the old version of `other`, gets 409
    answer = decide(client, entry_id(other), entry_rev(other), "edit", ["第二個分頁的譯文"])
    assert answer.status_code == 409
    assert state(path)[(None, other.msgid)][0] == "另一個譯文"


def test_a_running_translate_po_makes_writes_wait(reviewed) -> None:
    path, _, client = reviewed
    entry = pending(path)[0]
    data = path.read_bytes()
    with CatalogLock(path):  # what translate-po holds while it works on the file
        answer = decide(client, entry_id(entry), entry_rev(entry), "accept")
    assert answer.status_code == 409
    assert "another program" in answer.json()["error"]["message"]
    assert path.read_bytes() == data
    assert decide(client, entry_id(entry), entry_rev(entry), "accept").status_code == 200


def test_text_the_checks_reject_is_refused_not_altered(reviewed) -> None:
    path, reviewer, client = reviewed
    entry = pending(path)[0]
    data = path.read_bytes()
    answer = decide(client, entry_id(entry), entry_rev(entry), "edit", ["看 :func:`len`的說明"])
    assert answer.status_code == 422
    assert any("missing-space-after-role" in f for f in answer.json()["error"]["findings"])
    assert path.read_bytes() == data
    answer = decide(client, entry_id(entry), entry_rev(entry), "edit", ["  "])
    assert answer.status_code == 422 and "reject" in answer.json()["error"]["message"]
    assert not reviewer.log_path.exists()


def test_bad_requests(reviewed) -> None:
    path, _, client = reviewed
    entry = pending(path)[0]
    url = f"/api/files/0/entries/{entry_id(entry)}"
    body = json.dumps({"action": "accept", "rev": entry_rev(entry)})
    plain = client.post(url, content=body, headers={"content-type": "text/plain"})
    assert plain.status_code == 415  # what another site's page could send
    assert client.post(url, json={"action": "approve", "rev": "x"}).status_code == 422
    assert decide(client, entry_id(entry), entry_rev(entry), "edit").status_code == 422
    assert (
        client.post("/api/files/7/entries/x", json={"action": "accept", "rev": "x"}).json()[
            "error"
        ]["type"]
        == "not_found"
    )
    assert client.get("/files/7").status_code == 404
    assert path.read_bytes() == (CORPUS / ERRORS).read_bytes()


def args_for(*argv: str):
    return build_parser().parse_args(["review", *argv])


def test_paths_and_hosts_are_checked(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("POLINGO_API_KEY", raising=False)
    monkeypatch.delenv("POLINGO_API_KEY_FILE", raising=False)
    path = copy(tmp_path, ERRORS)
    readme = tmp_path / "notes.txt"
    readme.write_text("not a catalog")
    assert main(["review", str(readme)]) == 2
    assert f"{readme}: not a .po file or a folder" in capsys.readouterr().err
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: no such file" in capsys.readouterr().err
    assert catalogs([tmp_path / "docs"]) == [path]
    assert main(["review", str(path), "--host", "0.0.0.0"]) == 2
    assert "POLINGO_API_KEY" in capsys.readouterr().err

    # loopback: no key, but only this machine's host names are answered
    app = prepare(args_for(str(path), "--review-log", str(tmp_path / "log.jsonl")))
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "attacker.example:8765"}).status_code == 400


def test_beyond_loopback_every_request_wants_the_key(tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    monkeypatch.delenv("POLINGO_API_KEY", raising=False)
    monkeypatch.setenv("POLINGO_API_KEY_FILE", str(key_file))
    path = copy(tmp_path, ERRORS)
    app = prepare(args_for(str(path), "--host", "0.0.0.0", "--review-log", str(tmp_path / "l")))
    entry = pending(path)[0]
    url = f"/api/files/0/entries/{entry_id(entry)}"
    body = {"action": "accept", "rev": entry_rev(entry)}
    with TestClient(app) as client:
        page = client.get("/", follow_redirects=False)
        assert page.status_code in (302, 303) and page.headers["location"] == "/login"
        assert client.post(url, json=body).status_code == 401
        assert client.post("/login", data={"key": "wrong"}).status_code == 401
        assert path.read_bytes() == (CORPUS / ERRORS).read_bytes()
        assert client.post(url, json=body, headers={"x-api-key": "s3cret-key"}).status_code == 200
        login = client.post("/login", data={"key": "s3cret-key"}, follow_redirects=False)
        assert login.status_code == 303
        assert "s3cret-key" not in login.headers["set-cookie"]
        assert client.get("/files/0").status_code == 200  # the session cookie


def test_reject_with_an_unwritable_log_changes_nothing(tmp_path: Path, memory) -> None:
    """40.4: the log cannot be written (its folder is a file): the draft stays, the
    answer says why, and once the log can be written the same decision goes through."""
    path = copy(tmp_path, ERRORS)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    reviewer = Reviewer([path], blocker / "review-log.jsonl", memory)
    entry = pending(path)[0]
    with TestClient(create_app(reviewer)) as client:
        answer = decide(client, entry_id(entry), entry_rev(entry), "reject")
        assert answer.status_code == 500, answer.text
        error = answer.json()["error"]
        assert error["type"] == "not_saved"
        assert str(blocker / "review-log.jsonl") in error["message"]
        assert "the catalog was left as it was" in error["message"]
        assert path.read_bytes() == (CORPUS / ERRORS).read_bytes()
        reviewer.log_path = tmp_path / "review-log.jsonl"
        answer = decide(client, entry_id(entry), entry_rev(entry), "reject")
        assert answer.status_code == 200, answer.text
    assert [r.decision for r in log.read(reviewer.log_path)] == ["rejected"]
    check_tools(path)


def test_a_log_write_that_fails_puts_the_catalog_back(tmp_path: Path, memory, monkeypatch):
    """40.4, the other order: the log opens but the record cannot be written (a full
    disk): the catalog, already rewritten, is put back as it was."""
    import errno

    path = copy(tmp_path, ERRORS)
    reviewer = Reviewer([path], tmp_path / "review-log.jsonl", memory)
    entry = pending(path)[0]
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("review-log.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with TestClient(create_app(reviewer)) as client:
        answer = decide(client, entry_id(entry), entry_rev(entry), "accept")
    assert answer.status_code == 500 and "No space left" in answer.json()["error"]["message"]
    assert path.read_bytes() == (CORPUS / ERRORS).read_bytes()
    assert not reviewer.log_path.exists()  # no half line either


def test_review_page_head_frames_nesting_and_login_limit(tmp_path: Path, monkeypatch) -> None:
    """40.19: HEAD answers as GET; no page may be framed by another site; /login takes
    10 tries a minute. 40.5: a body of 100,000 "[" is a 422, not a RecursionError 500."""
    monkeypatch.setenv("POLINGO_API_KEY", "s3cret-key")
    path = copy(tmp_path, ERRORS)
    app = prepare(args_for(str(path), "--host", "0.0.0.0", "--review-log", str(tmp_path / "l")))
    entry = pending(path)[0]
    url = f"/api/files/0/entries/{entry_id(entry)}"
    with TestClient(app) as client:
        client.headers["x-api-key"] = "s3cret-key"
        page = client.get("/")
        head = client.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == page.headers["content-type"]
        for answer in (page, head, client.get("/files/99")):
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
        nested = client.post(
            url, content=b"[" * 100_000, headers={"content-type": "application/json"}
        )
        assert nested.status_code == 422, nested.text
        assert "nested too deeply" in nested.json()["error"]["message"]
        tries = [client.post("/login", data={"key": "wrong"}).status_code for _ in range(12)]
        assert tries == [401] * 10 + [429] * 2
    assert path.read_bytes() == (CORPUS / ERRORS).read_bytes()


def write_log(path: Path) -> None:
    log.append(
        path,
        [
            log.ReviewRecord(
                time=log.now(), file="a.po", msgctxt=None, source=s, draft=d, final=f, decision=k
            )  # fmt: skip
            for s, d, f, k in [
                ("Reviewed once.", "審過一次。", "審過一次。", "accepted"),
                ("Fixed by a person.", "機器的譯文", "人改過的譯文。", "edited"),
                ("Rejected draft.", "壞的譯文", "", "rejected"),
                ("Kept too.", "也保留。", "也保留。", "accepted"),
            ]
        ],
    )


def test_eval_reports_the_kept_share(tmp_path: Path, capsys) -> None:
    path = tmp_path / "review-log.jsonl"
    write_log(path)
    assert main(["eval", "--review-log", str(path)]) == 0
    out = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert out == {
        "review_accepted": "2",
        "review_edited": "1",
        "review_rejected": "1",
        "review_restored": "0",
        "review_decisions": "4",
        "kept_share": "0.5",
    }
    path.write_text('{"time": 1}\n')
    assert main(["eval", "--review-log", str(path)]) == 2
    assert f"{path}:1: bad review record" in capsys.readouterr().err


def test_retrain_takes_the_log_as_extra_pairs(tmp_path: Path, capsys) -> None:
    from training.retrain import load_docs

    path = tmp_path / "review-log.jsonl"
    write_log(path)
    docs = copy(tmp_path, ERRORS).parent.parent
    plain = load_docs(docs)
    corpus = load_docs(docs, path)
    extra = {(p.msgid, p.msgstr) for p in corpus.pairs} - {(p.msgid, p.msgstr) for p in plain.pairs}
    assert extra == {
        ("Reviewed once.", "審過一次。"),
        ("Fixed by a person.", "人改過的譯文。"),
        ("Kept too.", "也保留。"),
    }
    assert [p.key for p in corpus.pairs] == sorted(p.key for p in corpus.pairs)
    # the command: the log's pairs count as new data against the current version
    registry = tmp_path / "registry"
    shutil.copytree(packaged_registry(), registry)
    argv = ["retrain", "--docs", str(docs), "--registry", str(registry), "--min-changes", "100000"]
    assert main(argv) == 0
    without = capsys.readouterr().out
    assert main([*argv, "--review-log", str(path)]) == 0
    with_log = capsys.readouterr().out
    count = lambda text: int(re.search(r": (\d+) new", text).group(1))  # noqa: E731
    assert f"{path}: 3 pairs the catalogs do not have" in with_log
    assert count(with_log) == count(without) + 3


def test_decisions_of_a_reviewed_catalog_train(reviewed) -> None:
    """An accepted draft from the page becomes a training pair through the log."""
    path, reviewer, client = reviewed
    entry = pending(path)[0]
    decide(client, entry_id(entry), entry_rev(entry), "accept")
    assert log.training_pairs(log.read(reviewer.log_path)) == [(entry.msgid, entry.msgstr, None)]


# ---------------------------------------------------------------- the browser


def fifty_drafts(tmp_path: Path) -> Path:
    """faq/library.po cut to its first 50 fuzzy drafts that sphinx-lint finds clean (the
    other fuzzy entries removed), written as powrap writes it."""
    from clients.filling import run_msgcat
    from review.entries import lint_text

    path = copy(tmp_path, "faq/library.po")
    po = polib.pofile(str(path), wrapwidth=0)
    kept = 0
    for entry in [e for e in po if needs_review(e)]:
        if kept < 50 and not lint_text(entry.msgstr):
            kept += 1
        else:
            po.remove(entry)
    path.write_text(run_msgcat(po.__unicode__(), path))
    assert len(pending(path)) == 50
    return path


@pytest.fixture
def server(tmp_path: Path):
    import uvicorn

    first = copy(tmp_path, CONTROLFLOW)
    second = fifty_drafts(tmp_path)
    port = free_port()
    args = args_for(str(first), str(second), "--port", str(port),
                    "--review-log", str(tmp_path / "review-log.jsonl"))  # fmt: skip
    app = prepare(args)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", first, second, app.state.reviewer
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    found = browser_binaries()
    if found is None:
        pytest.skip("no chromium/chromedriver binary (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1100", "--disable-gpu"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_keyboard_review(server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, first, second, reviewer = server
    before = state(first)
    drafts = pending(first)[:3]
    wait = WebDriverWait(browser, 20)

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    def card(entry: polib.POEntry):
        return browser.find_element(By.ID, f"e-{entry_id(entry)}")

    def until_done(entry: polib.POEntry, decision: str) -> None:
        wait.until(lambda _: decision in card(entry).get_attribute("class").split())

    browser.get(url + "/")
    press(Keys.ENTER)  # the next file needing review: the first
    wait.until(lambda b: b.current_url.endswith("/files/0"))
    assert "current" in card(drafts[0]).get_attribute("class")
    press("a")
    until_done(drafts[0], "accepted")
    press("e")
    area = card(drafts[1]).find_element(By.CSS_SELECTOR, "textarea.edit")
    wait.until(lambda _: area.is_displayed())
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys("譯者在瀏覽器裡改寫的譯文。")
    ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(
        Keys.CONTROL
    ).perform()
    until_done(drafts[1], "edited")
    press("r")
    until_done(drafts[2], "rejected")
    assert browser.find_element(By.ID, "file-done").text == "3"
    assert "current" in card(pending(first)[0]).get_attribute("class")
    shot = tmp_path / "review-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("POLINGO_REVIEW_SCREENSHOT"):  # docs/review-page.png
        shutil.copyfile(shot, os.environ["POLINGO_REVIEW_SCREENSHOT"])

    after = state(first)
    keys = [(None, e.msgid) for e in drafts]
    assert {k for k in before if before[k] != after[k]} == set(keys)
    assert [after[k][:2] for k in keys] == [
        (drafts[0].msgstr, ()),
        ("譯者在瀏覽器裡改寫的譯文。", ()),
        ("", ()),
    ]
    check_tools(first)
    records = list(log.read(reviewer.log_path))
    assert [r.decision for r in records] == ["accepted", "edited", "rejected"]

    # the 50-entry file, with the keyboard alone: n goes there, a accepts each draft
    started = time.monotonic()
    press("n")
    wait.until(lambda b: b.current_url.endswith("/files/1"))
    for number in range(1, 51):
        press("a")
        wait.until(lambda b, n=number: b.find_element(By.ID, "file-done").text == str(n))
    elapsed = time.monotonic() - started
    wait.until(lambda b: b.find_element(By.ID, "file-end").is_displayed())
    assert pending(second) == []
    check_tools(second)
    assert len(list(log.read(reviewer.log_path))) == 53
    print(f"\n50-entry file reviewed by keyboard in {elapsed:.1f} s")


def with_confidences(path: Path, values: list[float]) -> list[polib.POEntry]:
    """translate-po's '# polingo: confidence X' on the first drafts needing review of
    ``path`` (one value each, in file order), written as powrap writes it."""
    from clients.filling import run_msgcat

    po = polib.pofile(str(path), wrapwidth=0)
    drafts = [e for e in po if needs_review(e)][: len(values)]
    for entry, value in zip(drafts, values, strict=True):
        entry.tcomment = "\n".join(filter(None, [entry.tcomment, f"polingo: confidence {value}"]))
    path.write_text(run_msgcat(po.__unicode__(), path))
    return drafts


def test_file_sorted_by_confidence_over_http(tmp_path: Path, memory) -> None:
    path = copy(tmp_path, CONTROLFLOW)
    drafts = with_confidences(path, [0.9, 0.2, 0.55])
    reviewer = Reviewer([path], tmp_path / "review-log.jsonl", memory)
    views = reviewer.entries(0, by_confidence=True)
    assert [v.confidence for v in views[:4]] == [0.2, 0.55, 0.9, None]
    assert [v.eid for v in views[:3]] == [entry_id(drafts[i]) for i in (1, 2, 0)]
    assert all("confidence" not in n for v in views for n in v.notes)  # no warning
    with TestClient(create_app(reviewer)) as client:
        page = client.get("/files/0?sort=confidence")
        assert page.status_code == 200 and "confidence 0.20" in page.text
        assert page.text.index(entry_id(drafts[1])) < page.text.index(entry_id(drafts[0]))
        refused = client.get("/files/0?sort=worst")
        assert refused.status_code == 422 and "sort" in refused.text
        # accepting a draft removes its confidence with polingo's other comments
        view = views[0]
        assert decide(client, view.eid, view.rev, "accept").status_code == 200
    accepted = next(e for e in polib.pofile(str(path)) if entry_id(e) == views[0].eid)
    assert "confidence" not in accepted.tcomment


def test_browser_sorts_a_file_by_confidence(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, first, _, _ = server
    values = [0.91, 0.12, 0.47, 0.66]
    drafts = with_confidences(first, values)
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/files/0")
    wait.until(lambda b: b.find_elements(By.ID, "sort-confidence"))
    browser.find_element(By.ID, "sort-confidence").click()
    wait.until(lambda b: b.current_url.endswith("/files/0?sort=confidence"))
    cards = browser.find_elements(By.CSS_SELECTOR, "article.entry")
    shown = [c.find_element(By.CSS_SELECTOR, ".badge.confidence").text for c in cards[:4]]
    assert shown == ["confidence 0.12", "confidence 0.47", "confidence 0.66", "confidence 0.91"]
    order = [drafts[values.index(v)] for v in sorted(values)]
    assert [c.get_attribute("data-eid") for c in cards[:4]] == [entry_id(e) for e in order]
    assert not cards[4].find_elements(By.CSS_SELECTOR, ".badge.confidence")
    # the keyboard starts at the least sure draft
    assert "current" in cards[0].get_attribute("class")
    assert "low" in cards[0].find_element(By.CSS_SELECTOR, ".badge.confidence").get_attribute(
        "class"
    )
