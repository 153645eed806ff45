"""translate-po with the REAL service: ``python -m cli.serve`` (create_app under
uvicorn) on 127.0.0.1 with the tiny random model and its LoRA adapter, and the same
translator opened in-process. The tiny model writes junk, which is the point here: the
catalogs must come out valid whatever the model says.

The service runs the transformers engine (one quick engine start for the module);
vLLM behind the same HTTP API is covered by test_service_http.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import polib
import pytest
from test_service_helpers import add_version, running_service
from test_translate_po import DATA, REPO, check_tools, copy_catalog, entry_state, needs

from clients.translate_po import main
from core.registry import Registry

pytestmark = pytest.mark.slow

SAMPLE = REPO / "examples/sample.po"
MAX_BATCH = 8  # the service's limit, below the client's default of 64: it must adapt
MAX_QUEUE = 12  # below jobs x batch: the service answers 503 + Retry-After, the client retries

PLURAL_ZH = """\
msgid ""
msgstr ""
"Project-Id-Version: test\\n"
"Language: zh_TW\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"
"Plural-Forms: nplurals=1; plural=0;\\n"

msgctxt "files"
msgid "%d file was copied"
msgid_plural "%d files were copied"
msgstr[0] ""

msgid "Return the :class:`list` of ``items``."
msgstr ""
"""


def remembered() -> tuple[str, str]:
    """An untranslated msgid of the sample and the human translation the memory holds
    (it keeps the source's markup, so no warning makes it fuzzy)."""
    entry = next(e for e in polib.pofile(str(SAMPLE)) if needs(e))
    return entry.msgid, "記憶中的人工翻譯：" + entry.msgid


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_model_dir: Path, tiny_adapter: Path) -> Registry:
    msgid, msgstr = remembered()
    registry = Registry(tmp_path_factory.mktemp("tpo") / "registry")
    memory = [{"msgid": msgid, "msgctxt": None, "msgstr": msgstr}]
    add_version(registry, "zh-tw", tiny_adapter, base_model=str(tiny_model_dir), memory=memory)
    return registry


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory) -> Iterator[str]:
    env = {
        **os.environ,
        "POLINGO_REGISTRY": str(registry.root),
        "POLINGO_ADAPTER": "zh-tw",
        "POLINGO_ENGINE": "transformers",
        "POLINGO_MAX_BATCH": str(MAX_BATCH),
        "POLINGO_MAX_QUEUE": str(MAX_QUEUE),
        "POLINGO_MAX_NEW_TOKENS": "16",  # junk either way; keeps the module quick
    }
    log_path = tmp_path_factory.mktemp("tpo-log") / "service.log"
    with running_service(env, log_path) as url:
        yield url


def check_catalog(
    path: Path, original: Path | None, before: list[polib.POEntry], *, fuzzy: bool = True
) -> dict[str, int]:
    """Only the entries that needed it changed; each is fuzzy unless the memory answered
    (or, with --no-fuzzy, unless it came without warnings); the tools pass."""
    msgid, msgstr = remembered()
    counts = {"filled": 0, "memory": 0}
    after = list(polib.pofile(str(path)))
    assert [(e.msgctxt, e.msgid) for e in after] == [(e.msgctxt, e.msgid) for e in before]
    for old, new in zip(before, after, strict=True):
        if not needs(old):
            assert entry_state(new) == entry_state(old)
        elif new.msgstr == msgstr and old.msgid == msgid:
            assert not new.fuzzy
            counts["memory"] += 1
        elif new.msgstr or any(new.msgstr_plural.values()):
            assert new.fuzzy == (fuzzy or "polingo: " in new.tcomment)
            counts["filled"] += 1
    check_tools(path, original)
    return counts


def test_fills_real_catalogs_through_the_service(tmp_path: Path, service: str, capsys) -> None:
    folder = tmp_path / "po"
    sample = folder / "sample.po"
    folder.mkdir()
    shutil.copyfile(SAMPLE, sample)
    (folder / "plural.po").write_text(PLURAL_ZH, encoding="utf-8")
    functions = copy_catalog(folder, "library/functions.po")
    before = {p: list(polib.pofile(str(p))) for p in (sample, folder / "plural.po", functions)}
    # --no-fuzzy: msgfmt and sphinx-lint read the junk that comes without warnings
    status = main([str(folder), "--server", service, "--no-progress", "--no-fuzzy"])
    out = capsys.readouterr()
    assert status in (0, 1), out.err  # 1 only where the junk model answered nothing usable
    assert "Traceback" not in out.err
    counts = check_catalog(sample, SAMPLE, before[sample], fuzzy=False)
    assert counts["memory"] == 1 and counts["filled"] >= 1
    check_catalog(folder / "plural.po", None, before[folder / "plural.po"], fuzzy=False)
    check_catalog(functions, DATA / "library/functions.po", before[functions], fuzzy=False)
    assert f"{sample}: filled" in out.out and "total (3 files)" in out.out
    assert not list(folder.rglob("*.lock")) and not list(folder.rglob(".*polingo-tmp"))


def test_unknown_adapter_is_a_usage_error(tmp_path: Path, service: str, capsys) -> None:
    sample = tmp_path / "sample.po"
    shutil.copyfile(SAMPLE, sample)
    assert main([str(sample), "--server", service, "--adapter", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown_adapter" in err and "nothing was written" in err
    assert sample.read_bytes() == SAMPLE.read_bytes()


def test_in_process_translator(tmp_path: Path, registry: Registry, capsys) -> None:
    sample = tmp_path / "sample.po"
    shutil.copyfile(SAMPLE, sample)
    before = list(polib.pofile(str(sample)))
    args = [
        str(sample),
        "--registry",
        str(registry.root),
        "--engine",
        "transformers",
        "--no-progress",
    ]
    status = main(args)
    out = capsys.readouterr()
    assert status in (0, 1), out.err
    assert "in-process translator (zh-tw on" in out.err
    counts = check_catalog(sample, SAMPLE, before)
    assert counts["memory"] == 1 and counts["filled"] >= 1
