"""Issue 42: the document split (whole catalogs held out by a hash of their path), the
memory it is hidden from, the failure report of a split, and (slow) `polingo eval`
reporting both splits, labelled, on the tiny model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import CORPUS
from test_training import polingo, train_args, tutorial_docs, write_po

from core.memory import TranslationMemory
from core.registry import Registry
from core.retrieval import similarity
from training.data import is_document_heldout, is_heldout, load_corpus, stats_lines
from training.failures import failure_kinds, failure_report, repeated_run

SHIPPED = Path(__file__).resolve().parent.parent / "core" / "default_adapter"


def names(held: bool, count: int, percent: float = 30.0) -> list[str]:
    """``count`` catalog names that the document split at ``percent`` holds out (or not)."""
    found = [f"doc{i}.po" for i in range(400) if is_document_heldout(f"doc{i}.po", percent) == held]
    return found[:count]


def test_document_split_holds_out_whole_catalogs_but_not_shared_texts(tmp_path: Path) -> None:
    (held,) = names(True, 1)
    kept_a, kept_b = names(False, 2)
    write_po(
        tmp_path / held,
        'msgid "Only here."\nmsgstr "只在這裡。"\n\nmsgid "Shared."\nmsgstr "共用。"\n',
    )
    write_po(
        tmp_path / kept_a,
        'msgid "Shared."\nmsgstr "共用。"\n\nmsgid "Elsewhere."\nmsgstr "別處。"\n',
    )
    write_po(tmp_path / kept_b, 'msgid "Again."\nmsgstr "再一次。"\n')

    splits = load_corpus(tmp_path).splits(heldout_percent=0, document_percent=30)
    assert splits.document_files == [held]
    # the held-out page's own text is out; the text another catalog translates trains
    assert [p.msgid for p in splits.documents] == ["Only here."]
    assert sorted(p.msgid for p in splits.train) == ["Again.", "Elsewhere.", "Shared."]
    assert splits.pairs == []
    # split() (what training and the pair-split callers use) leaves the page out too
    train, pair_split = load_corpus(tmp_path).split(0, 30)
    assert "Only here." not in {p.msgid for p in train + pair_split}
    # no document split at 0%
    assert load_corpus(tmp_path).splits(0, 0).documents == []


def test_document_split_is_stable_across_trees_and_snapshots(tmp_path: Path) -> None:
    corpus = load_corpus(CORPUS)
    splits = corpus.splits(3.0, 20.0)
    # paths relative to the tree root, the same wherever the tree lies
    assert splits.document_files == [
        "faq/programming.po", "howto/enum.po", "howto/index.po", "howto/ipaddress.po",
        "library/copy.po", "tutorial/floatingpoint.po", "tutorial/inputoutput.po",
    ]  # fmt: skip
    docs = {p.msgid for p in splits.documents}
    assert docs and not docs & {p.msgid for p in splits.train + splits.pairs}
    assert not docs & {p.msgid for p in splits.pairs}
    for pair in splits.documents:  # only held-out catalogs translate it
        assert corpus.origins[pair.msgid] <= set(splits.document_files)
    assert all(is_heldout(p.msgid, 3.0) for p in splits.pairs)

    # another snapshot of the tree, with a catalog more, copied elsewhere: same choice
    for rel in ("tutorial", "howto"):
        shutil.copytree(CORPUS / rel, tmp_path / "later" / rel)
    write_po(tmp_path / "later" / "0-new" / "page.po", 'msgid "New page."\nmsgstr "新頁。"\n')
    later = load_corpus(tmp_path / "later").splits(3.0, 20.0)
    assert set(later.document_files) == {
        f for f in splits.document_files if f.startswith(("tutorial/", "howto/"))
    }

    lines = "\n".join(stats_lines(corpus, 3.0, 20.0))
    assert "pair split          " in lines and "(3% by msgid hash)" in lines
    assert f"document split      {len(docs)} in 7 catalogs (20% by path hash)" in lines
    assert "  tutorial/floatingpoint.po" in lines


def test_memory_without_held_out_texts() -> None:
    memory = TranslationMemory()
    memory.add("Open", "開啟", "menu")
    memory.add("Open", "打開")
    memory.add("Close", "關閉")
    kept = memory.without({"Open"})
    assert len(kept) == 1 and kept.lookup("Open", "menu") is None and kept.lookup("Close")
    assert len(memory) == 3  # the original is untouched


def test_shipped_adapters_still_load_and_predate_the_document_split() -> None:
    from training.evaluate import catalogs_trained_on, split_percents

    registry = Registry(SHIPPED)
    for ref in ("zh-tw@v1", "zh-tw@v3"):
        manifest = registry.manifest(ref)
        assert manifest.data.document_files is None and manifest.document_metrics == {}
        assert manifest.metrics["chrf"] > 0  # the pair split's figures are kept
        assert split_percents(registry, ref) == (3.0, 7.0)
        # trained on every catalog: every document-split catalog counts as seen
        assert catalogs_trained_on(registry, ref, ["a.po", "b.po"]) == ["a.po", "b.po"]
    # v4 and v5, the current one, came from `polingo retrain` with the split held out
    assert registry.current("zh-tw") == "v5"
    for ref, parent in (("zh-tw@v4", "zh-tw@v3"), ("zh-tw@v5", "zh-tw@v4")):
        manifest = registry.manifest(ref)
        assert manifest.parent == parent
        held_out = manifest.data.document_files
        assert held_out and len(held_out) == 35 and manifest.document_metrics["chrf_prose"] > 0
        assert catalogs_trained_on(registry, ref, held_out) == []


def test_similarity_is_word_overlap() -> None:
    assert similarity("Return the value.", "return the VALUE") == 1.0
    assert similarity("Return the value.", "Open a file.") == 0.0
    assert similarity("a b c d", "a b") == 0.5
    assert similarity("", "anything") == 0.0


# ---- the failure report ------------------------------------------------------------------

SOURCE = "Use :func:`open` to read the file, then close it when you are done."
REFERENCE = "使用 :func:`open` 讀取檔案，並在完成後關閉它。"


def test_failure_kinds_each_catch_their_failure() -> None:
    assert failure_kinds(SOURCE, REFERENCE, REFERENCE) == []
    assert failure_kinds(SOURCE, REFERENCE, "使用 open 讀取檔案，並在完成後關閉它。") == [
        "dropped_markup"
    ]
    assert failure_kinds(SOURCE, REFERENCE, "使用 :func:`open` 讀取。") == ["short"]
    repeated = "使用 :func:`open` 讀取這個檔案的內容，使用 :func:`open` 讀取這個檔案的內容。"
    assert failure_kinds(SOURCE, REFERENCE, repeated) == ["repeated"]
    assert repeated_run(repeated, REFERENCE) == "使用讀取這個檔案"
    assert failure_kinds(SOURCE, REFERENCE, "使用 :func:`open` to read the file，並關閉它。") == [
        "english_left"
    ]
    assert "copied_source" in failure_kinds(SOURCE, REFERENCE, SOURCE)
    assert failure_kinds(SOURCE, REFERENCE, "") == ["empty"]
    # code copied as the reference copies it is no failure
    assert failure_kinds("``x = 1``", "``x = 1``", "``x = 1``") == []


def test_failure_report_counts_kinds_ratios_and_example_bands() -> None:
    sources = [SOURCE, SOURCE, SOURCE, SOURCE]
    refs = [REFERENCE] * 4
    outputs = [REFERENCE, "使用 :func:`open` 讀取。", "", REFERENCE]
    report = failure_report(sources, refs, outputs, [0.7, 0.1, None, 0.65])
    assert report["entries"] == 4 and report["failing"] == 2
    assert report["counts"]["short"] == 1 and report["counts"]["empty"] == 1
    assert report["counts"]["dropped_markup"] == 0
    assert report["length_ratio_to_reference"]["median"] == 1.0
    bands = {b["band"]: b for b in report["examples"]["bands"]}
    assert bands["best example 0.6-1.0"]["entries"] == 2
    assert bands["best example 0.6-1.0"]["failing"] == 0
    assert bands["best example 0.6-1.0"]["chrf_prose"] == 100.0
    assert bands["best example 0.0-0.2"]["failing"] == 1
    assert bands["no examples"]["entries"] == 1
    assert report["examples"]["entries_with_examples"] == 3
    assert report["cases"]["short"][0]["example_similarity"] == 0.1


# ---- extra training text (older snapshots, update triples) -------------------------------


def test_extra_pairs_leave_out_held_out_texts_and_known_keys(tmp_path: Path) -> None:
    from training.data import extra_pairs

    (held,) = names(True, 1)
    kept, other = names(False, 2)
    pair_held = next(f"Text {i}." for i in range(200) if is_heldout(f"Text {i}.", 50.0))
    trains, new, old = [f"Text {i}." for i in range(200) if not is_heldout(f"Text {i}.", 50.0)][:3]
    write_po(tmp_path / "now" / kept, 'msgid "Known."\nmsgstr "已知。"\n')
    write_po(tmp_path / "now" / held, 'msgid "Page text."\nmsgstr "頁面文字。"\n')
    corpus = load_corpus(tmp_path / "now")
    # an older snapshot: its held-out page had other sentences then
    write_po(tmp_path / "old" / held, 'msgid "Page text, older."\nmsgstr "較舊的頁面文字。"\n')
    write_po(
        tmp_path / "old" / other,
        f'msgid "Known."\nmsgstr "舊譯。"\n\nmsgid "{trains}"\nmsgstr "文字。"\n\n'
        f'msgid "{pair_held}"\nmsgstr "保留。"\n',
    )
    triples = tmp_path / "updates.jsonl"
    rows = [
        {"file": held, "msgid": "A", "msgstr": "甲", "previous_msgid": "a", "old_msgstr": "甲甲"},
        {"file": other, "msgid": new, "msgstr": "乙", "previous_msgid": old, "old_msgstr": "乙乙"},
    ]
    triples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    extra, counts = extra_pairs(
        [tmp_path / "old", triples], corpus, heldout_percent=50.0, document_percent=30.0
    )
    got = {p.msgid: p.msgstr for p in extra}
    assert trains in got and "Page text, older." not in got and pair_held not in got
    assert "Known." not in got  # the data's own translation wins
    assert (got[new], got[old]) == ("乙", "乙乙")  # both sides of an update triple
    assert "A" not in got and "a" not in got  # a held-out page's update
    assert counts["known"] == 1 and counts["document_split"] == 3 and counts["pair_split"] >= 1
    assert counts["added"] == len(extra)

    triples.write_text('{"msgid": "x"}\n')
    with pytest.raises(ValueError, match=r"updates.jsonl:1: bad update triple"):
        extra_pairs([triples], corpus)


@pytest.mark.slow
def test_train_holds_out_the_documents_and_trains_on_extra_text(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from conftest import SNAPSHOTS

    docs = tutorial_docs(tmp_path)
    registry = Registry(tmp_path / "registry")
    done = polingo(
        *train_args(docs, tiny_model_dir, registry.root, "--max-pairs", "20", "--max-steps", "2",
                    "--batch-tokens", "2048", "--document-percent", "20",
                    "--extra-data", str(SNAPSHOTS / "2024-07-20"))
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(document split)" in done.stderr and "extra training text: " in done.stderr
    manifest = registry.manifest("zh@v1")
    data = manifest.data
    assert data.document_files == ["tutorial/floatingpoint.po", "tutorial/inputoutput.po"]
    splits = load_corpus(docs).splits(3.0, 20.0)
    assert data.document_pairs == len(splits.documents) and data.heldout_pairs == len(splits.pairs)
    assert data.extra_pairs > 0 and data.train_pairs > 20  # the extra text trained
    assert manifest.training["extra_data"] == [str(SNAPSHOTS / "2024-07-20")]
    assert manifest.training["document_percent"] == 20.0
    memory = (registry.path("zh@v1") / "memory.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(memory) == 20  # the training pairs alone: no extra text, no held-out page

    missing = polingo(
        "train", "--data", str(docs), "--base-model", str(tiny_model_dir),
        "--registry", str(registry.root), "--extra-data", str(tmp_path / "nowhere"),
    )  # fmt: skip
    assert missing.returncode == 2 and "--extra-data" in missing.stderr
    assert "nowhere: no such file or folder" in missing.stderr


# ---- `polingo eval` on both splits (slow: the tiny model through the service's path) ----


@pytest.mark.slow
def test_eval_reports_both_splits_labelled_and_hides_the_documents_from_memory(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapter: Path
) -> None:
    from test_service_helpers import add_version

    docs = tmp_path / "docs"
    shutil.copytree(CORPUS / "tutorial", docs / "tutorial")
    splits = load_corpus(docs).splits(20.0, 20.0)
    assert splits.document_files == ["tutorial/floatingpoint.po", "tutorial/inputoutput.po"]
    row = lambda p: {"msgid": p.msgid, "msgctxt": p.msgctxt, "msgstr": p.msgstr}  # noqa: E731
    registry = Registry(tmp_path / "registry")
    # v1 predates the split: it trained on every catalog, and its memory holds the pages
    old = [row(p) for p in splits.train + splits.documents]
    # v2 held them out: its manifest says so
    new = [row(p) for p in splits.train]
    for memory in (old, new):
        add_version(registry, "zh", tiny_adapter, base_model=str(tiny_model_dir), memory=memory)
    for ref, files in (("zh@v1", None), ("zh@v2", splits.document_files)):
        manifest = registry.manifest(ref)
        manifest.training = {"heldout_percent": 20.0, "document_percent": 20.0}
        manifest.data.document_files = files
        registry.update_manifest(ref, manifest)

    done = polingo(
        "eval", "--registry", str(registry.root), "--adapter", "zh@v2", "zh@v1",
        "--data", str(docs), "--limit", "3", "--engine", "transformers",
        "--markup-retries", "0",
        env={**os.environ, "POLINGO_MAX_NEW_TOKENS": "16"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "pair split (3 pairs)" in out and "document split (3 pairs)" in out
    assert out.index("pair split") < out.index("document split")
    assert "zh@v1 trained on 2 of the document split's 2 catalogs" in done.stderr
    assert "zh@v2 trained on" not in done.stderr

    for ref, trained in (("zh@v1", 2.0), ("zh@v2", 0.0)):
        manifest = registry.manifest(ref)
        document = manifest.document_metrics
        assert document["pairs"] == 3 and document["catalogs"] == 2
        assert document["catalogs_trained_on"] == trained
        # v1's memory holds the documents' translations: hidden, so nothing is looked up
        assert document["from_memory"] == 0
        assert manifest.metrics["pairs"] == 3 and "catalogs" not in manifest.metrics
        assert "failures_short" in document and "failures_dropped_markup" in manifest.metrics
        report = registry.path(ref) / "report"
        failures = json.loads((report / "failures.json").read_text())
        assert set(failures) == {"pair split", "document split"}
        assert failures["document split"]["entries"] == 3
        rows = [json.loads(x) for x in (report / "predictions.jsonl").read_text().splitlines()]
        assert [r["split"] for r in rows] == ["pair"] * 3 + ["document"] * 3
        assert {r["msgid"] for r in rows if r["split"] == "document"} <= {
            p.msgid for p in splits.documents
        }
        readme = (report / "README.md").read_text()
        assert "## pair split" in readme and "## document split" in readme
        assert "## failures" in readme

    # --split document: that split's rows replaced, the pair split's kept
    again = polingo(
        "eval", "--registry", str(registry.root), "--adapter", "zh@v2", "--data", str(docs),
        "--limit", "2", "--engine", "transformers", "--split", "document",
        env={**os.environ, "POLINGO_MAX_NEW_TOKENS": "16"},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    report = registry.path("zh@v2") / "report"
    rows = [json.loads(x) for x in (report / "predictions.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["pair"] * 3 + ["document"] * 2
    assert registry.manifest("zh@v2").document_metrics["pairs"] == 2
    assert registry.manifest("zh@v2").metrics["pairs"] == 3

    # --split document --no-record: that split alone, nothing written
    before = (registry.path("zh@v2") / "manifest.json").read_bytes()
    only = polingo(
        "eval", "--registry", str(registry.root), "--adapter", "zh@v2", "--data", str(docs),
        "--limit", "2", "--engine", "transformers", "--split", "document", "--no-record",
        env={**os.environ, "POLINGO_MAX_NEW_TOKENS": "16"},
    )  # fmt: skip
    assert only.returncode == 0, only.stderr[-3000:]
    assert "document split (2 pairs)" in only.stdout and "pair split" not in only.stdout
    assert (registry.path("zh@v2") / "manifest.json").read_bytes() == before


# ---- examples only when similar enough (a contract switch, off for the shipped ones) -----


def test_examples_below_the_min_similarity_are_not_shown(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from core.prompt import PromptBuilder, contract_preset
    from core.retrieval import ExampleIndex

    pairs = [
        ("Return the absolute value of a number.", "回傳一個數的絕對值。"),
        ("Return the number of items.", "回傳項目的數量。"),
        ("The value is a number.", "該值是一個數。"),
    ]
    query = "Return the absolute value of x."
    index = ExampleIndex(pairs)
    every = [e.msgid for e in index.search([query], 3)[0]]
    assert len(every) == 3
    close = index.search([query], 3, min_similarity=0.5)[0]
    assert [e.msgid for e in close] == [pairs[0][0]]  # 5 of 8 words
    assert all(similarity(e.msgid, query) >= 0.5 for e in close)

    contract = contract_preset("v2:examples=3,min_similarity=0.5")
    assert contract.min_similarity == 0.5 and contract_preset("v2").min_similarity == 0.0
    with pytest.raises(ValueError, match="min_similarity"):
        contract_preset("v2:min_similarity=1.5")
    memory = TranslationMemory()
    for msgid, msgstr in pairs:
        memory.add(msgid, msgstr)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    builder = PromptBuilder(contract, tokenizer, memory, [], max_length=768)
    assert [e.msgid for e in builder.examples_for([query])[0]] == [pairs[0][0]]
    # the shipped versions' contracts read back with the switch off: prompts unchanged
    registry = Registry(SHIPPED)
    for ref in ("zh-tw@v1", "zh-tw@v3"):
        assert registry.manifest(ref).contract.min_similarity == 0.0
    for ref in ("zh-tw@v4", "zh-tw@v5"):
        assert registry.manifest(ref).contract.min_similarity == 0.2


# ---- repetition control at decoding (a setting, off by default) ---------------------------


def test_frequency_penalty_counts_the_generated_tokens_only() -> None:
    import torch

    from service.engines.hf_engine import frequency_penalty

    processor = frequency_penalty(0.5, width=2)
    ids = torch.tensor([[7, 7, 5, 7, 5, 5]])  # prompt 7 7, then 5 7 5 5
    scores = processor(ids, torch.zeros(1, 10))
    assert scores[0, 5] == -1.5 and scores[0, 7] == -0.5 and scores[0, 1] == 0
    assert torch.equal(processor(ids[:, :2], torch.zeros(1, 10)), torch.zeros(1, 10))


def test_penalty_settings_are_checked() -> None:
    from core.settings import Settings

    assert Settings.from_env({}).repetition_penalty == 1.0  # off by default
    assert Settings.from_env({}).frequency_penalty == 0.0
    with pytest.raises(ValueError, match="POLINGO_FREQUENCY_PENALTY"):
        Settings.from_env({"POLINGO_FREQUENCY_PENALTY": "3"})
    with pytest.raises(ValueError, match="POLINGO_REPETITION_PENALTY"):
        Settings.from_env({"POLINGO_REPETITION_PENALTY": "0"})


def test_penalties_change_what_the_transformers_engine_repeats(tiny_model_dir: Path) -> None:
    import asyncio
    from collections import Counter

    from core.settings import Settings
    from service.engines.hf_engine import open_hf_engine

    async def most_repeated(**penalty: float) -> int:
        settings = Settings(engine="transformers", **penalty)
        async with open_hf_engine(settings, tiny_model_dir) as engine:
            (out,) = await engine.generate(
                [[1, 2, 3, 4]], max_tokens=[24], stop_token_ids=[], adapter=None,
                ignore_stop=True,
            )  # fmt: skip
        return max(Counter(out.token_ids).values())

    plain = asyncio.run(most_repeated())
    assert plain >= 4  # random weights repeat themselves
    assert asyncio.run(most_repeated(frequency_penalty=2.0)) < plain
    assert asyncio.run(most_repeated(repetition_penalty=5.0)) < plain


def test_vllm_engine_passes_the_penalties_to_every_request() -> None:
    import asyncio
    from types import SimpleNamespace

    from service.engines.vllm_engine import VllmEngine

    seen = []

    class RecordingLLM:  # stands in for AsyncLLM: what the engine asks of it
        async def generate(self, prompt, params, request_id, lora_request):  # noqa: ANN001, ANN202
            seen.append(params)
            yield SimpleNamespace(
                outputs=[SimpleNamespace(token_ids=[5], finish_reason="stop", logprobs=None)]
            )

    engine = VllmEngine(RecordingLLM(), repetition_penalty=1.2, frequency_penalty=0.4)
    asyncio.run(engine.generate([[1, 2], [3]], max_tokens=[4, 4], stop_token_ids=[0], adapter=None))
    assert [(p.repetition_penalty, p.frequency_penalty) for p in seen] == [(1.2, 0.4)] * 2


# ---- the retrain gate's decision -----------------------------------------------------------


def test_gate_refuses_a_candidate_worse_on_either_split_beyond_the_margin() -> None:
    from training.evaluate import Evaluation
    from training.retrain import decide, refused_on

    def scored(**chrf: float) -> dict[str, Evaluation]:
        return {
            split: Evaluation("zh@v", {"chrf": value, "pairs": 200.0}, {}, [], [], split=split)
            for split, value in chrf.items()
        }

    reference = scored(pair=70.0, document=60.0)
    ok = decide(scored(pair=69.6, document=59.6), reference, 0.5)
    assert set(ok) == {"pair split", "document split"}
    assert all(v["passed"] for v in ok.values()) and ok["document split"]["delta"] == -0.4
    assert ok["document split"]["pairs"] == 200
    worse_on_documents = decide(scored(pair=75.0, document=59.0), reference, 0.5)
    assert not worse_on_documents["document split"]["passed"]
    assert worse_on_documents["pair split"]["passed"]
    worse_on_pairs = decide(scored(pair=69.0, document=65.0), reference, 0.5)
    assert not worse_on_pairs["pair split"]["passed"]  # the pair split must not get worse
    # a tree without a document split: the pair split alone
    assert set(decide(scored(pair=70.0), scored(pair=70.0), 0.5)) == {"pair split"}
    assert all(v["binding"] for v in worse_on_documents.values())
    # a reference from before the split trained on its catalogs: its document figure is
    # not that of unseen pages, so losing there does not count; the pair split still does
    pre_split = scored(pair=70.0, document=92.0)
    pre_split["document"].metrics.update(catalogs=35.0, catalogs_trained_on=35.0)
    fair = decide(scored(pair=70.5, document=60.0), pre_split, 0.5)
    assert not fair["document split"]["passed"] and not fair["document split"]["binding"]
    assert "reference trained on 35 of its 35 catalogs" in fair["document split"]["why"]
    assert fair["pair split"]["binding"] and fair["pair split"]["passed"]
    assert refused_on(fair) == []
    assert refused_on(decide(scored(pair=68.0, document=60.0), pre_split, 0.5)) == ["pair split"]
    assert refused_on(worse_on_documents) == ["document split"] and refused_on(ok) == []


def test_predictions_read_back_by_split(tmp_path: Path) -> None:
    from training.evaluate import predictions_by_split

    path = tmp_path / "predictions.jsonl"
    rows = [
        {"msgid": "Old", "reference": "舊", "output": "舊"},  # from before the split: pair
        {"split": "pair", "msgid": "A", "reference": "甲", "output": "甲"},
        {"split": "document", "msgid": "B", "reference": "乙", "output": "乙"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n")
    by_split = predictions_by_split(path)
    assert {k: [r["msgid"] for r in v] for k, v in by_split.items()} == {
        "pair": ["Old", "A"],
        "document": ["B"],
    }
    for version in ("v4", "v5"):
        shipped = predictions_by_split(SHIPPED / f"zh-tw/{version}/report/predictions.jsonl")
        assert {k: len(v) for k, v in shipped.items()} == {"pair": 300, "document": 300}
