"""Contract v2 end to end: what training shows the model is what the service prompts.

Memory examples, glossary terms and labels between placeholders are built by one
PromptBuilder on both sides; these tests hold training's tokens against the serving
side's prompt, and run `polingo train --contract v2` and `polingo eval` for real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import CORPUS
from test_training import polingo, train_args, tutorial_docs

from core.memory import TranslationMemory
from core.prompt import CONTRACT_PRESETS, PromptBuilder
from core.registry import Registry
from core.terms import Term, load_terms, write_terms
from training.config import TrainConfig
from training.data import load_corpus
from training.train import corpus_terms, tokenize_pairs

V2 = CONTRACT_PRESETS["v2"]


def test_training_tokens_start_with_the_serving_prompt(tiny_model_dir: Path) -> None:
    """For a training pair, the prompt part of its tokens is exactly the prompt the
    service builds for that source from the adapter's memory (never showing the source
    itself as an example) and the same terms."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = load_corpus(CORPUS / "tutorial").pairs[:300]
    terms = corpus_terms(CORPUS)
    assert len(terms) > 50  # the fixture's glossary.po has terms
    config = TrainConfig(data=CORPUS, contract=V2, max_length=768)
    examples, _ = tokenize_pairs(tokenizer, pairs, config, terms)
    # the service's side: the adapter's memory.jsonl holds every training pair
    memory = TranslationMemory()
    for pair in pairs:
        memory.add(pair.msgid, pair.msgstr, pair.msgctxt)
    builder = PromptBuilder(V2, tokenizer, memory, terms, max_length=768)
    checked = shown = 0
    for pair in pairs[:60]:
        # long sources: with this English tokenizer their Chinese translation outgrows the
        # serving budget, and training then leaves more room (PromptBuilder._fit)
        if len(pair.msgid) > 200:
            continue
        prepared = builder.prompt(pair.msgid, pair.msgctxt)
        trained = [e for e in examples if e["input_ids"][: len(prepared.prompt_ids)]
                   == prepared.prompt_ids]  # fmt: skip
        assert trained, pair.msgid
        labels = trained[0]["labels"]
        assert labels[: len(prepared.prompt_ids)] == [-100] * len(prepared.prompt_ids)
        checked += 1
        shown += bool(prepared.examples)
    assert checked >= 20 and shown >= checked // 2  # most prompts carry memory examples


@pytest.mark.slow
def test_train_and_eval_with_contract_v2(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = tutorial_docs(tmp_path)
    shutil.copy(CORPUS / "glossary.po", docs / "glossary.po")
    glossary = corpus_terms(docs)
    # --terms: one more term, and one the glossary names already (its target wins)
    more = [Term("file descriptor", "檔案描述器"), Term(glossary[0].source.upper(), "別的")]
    terms_file = write_terms(tmp_path, more)
    registry = tmp_path / "registry"
    done = polingo(
        *train_args(docs, tiny_model_dir, registry, "--max-pairs", "80", "--max-steps", "3",
                    "--batch-tokens", "4096", "--max-length", "768", "--contract", "v2",
                    "--terms", str(terms_file))
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"terms: 1 more from {terms_file}" in done.stderr
    reg = Registry(registry)
    manifest = reg.manifest("zh")
    assert manifest.contract == V2 and manifest.training["terms"] == str(terms_file)
    # the glossary and the new term travel along, for the service's prompts
    assert load_terms(reg.path("zh")) == [*glossary, more[0]]
    evaluated = polingo(
        "eval", "--adapter", "zh", "--data", str(docs), "--registry", str(registry),
        "--limit", "3", "--engine", "transformers", "--markup-retries", "0",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = (reg.path("zh") / "report" / "predictions.jsonl").read_text(encoding="utf-8")
    assert len(rows.splitlines()) == 3
    assert reg.manifest("zh").metrics["pairs"] == 3


def test_data_terms_mines_the_training_split_and_leaves_the_glossary_out(tmp_path: Path) -> None:
    """`polingo data terms`: the corpus fixture's consistent translations, none of the
    glossary's terms, none mined from either held-out split, a file train --terms reads."""
    from core.terms import read_glossary, read_terms
    from training.data import load_corpus
    from training.term_mining import mine

    out = tmp_path / "mined.jsonl"
    done = polingo("data", "terms", str(CORPUS), "-o", str(out), "--min-pairs", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    terms = {t.source: t.target for t in read_terms(out)}
    assert f"{len(terms)} terms -> {out}" in done.stdout and len(terms) > 100
    assert terms["algorithm"] == "演算法" and terms["binary data"] == "二進位資料"
    glossary = {t.source.lower() for t in read_glossary(CORPUS / "glossary.po")}
    assert glossary and not glossary & set(terms)
    # a term only the held-out pairs show is not mined: mining them finds more
    splits = load_corpus(CORPUS).splits()
    train = [(p.msgid, p.msgstr) for p in splits.train if p.msgstr != p.msgid]
    every = train + [(p.msgid, p.msgstr) for p in splits.pairs + splits.documents]
    assert {t["source"] for t in mine(train, 4, 0.6, 150)} - glossary == set(terms)
    assert {t["source"] for t in mine(every, 4, 0.6, 150)} != {
        t["source"] for t in mine(train, 4, 0.6, 150)
    }
    missing = polingo("data", "terms", str(tmp_path / "nothing"), "-o", str(out))
    assert missing.returncode == 2 and "not a folder of .po files" in missing.stderr


def test_terms_option_is_checked_before_any_work(tmp_path: Path) -> None:
    from training.config import ConfigError, validate

    good = write_terms(tmp_path, [Term("file descriptor", "檔案描述器")])
    validate(TrainConfig(data=CORPUS, contract=V2, terms=good))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": "甲"}\n{"source": "b"}\n', encoding="utf-8")
    for config, message in [
        (TrainConfig(data=CORPUS, contract=V2, terms=tmp_path / "none.jsonl"), "no such file"),
        (TrainConfig(data=CORPUS, contract=V2, terms=bad), f"{bad}:2: bad term"),
        (TrainConfig(data=CORPUS, terms=good), "give --contract v2"),  # v1: no terms shown
    ]:
        with pytest.raises(ConfigError, match=message):
            validate(config)


def test_contract_option_changes_switches_of_a_preset() -> None:
    """`--contract v2:examples=0,terms=off` (the ablations of docs/benchmarks.md)."""
    import argparse

    from training.config import contract_option

    ablation = contract_option("v2:examples=0,terms=off")
    assert (ablation.examples, ablation.terms) == (0, False)
    assert (ablation.version, ablation.translate_labels, ablation.post_edit) == (2, True, True)
    assert contract_option("v2") == V2
    for spec, message in [
        ("v2:example=0", "unknown contract switch 'example'"),
        ("v2:terms=maybe", "terms: 'maybe' is not a bool"),
        ("v1:examples=2", "need contract version 2"),
        ("v2:version=1", "unknown contract switch 'version'"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            contract_option(spec)
