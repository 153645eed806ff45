"""Simplified usage of characters both scripts have (那么), detected and converted as
phrases (core/chinese.py SIMPLIFIED_PHRASES)."""

from __future__ import annotations

import json
from pathlib import Path

from core.chinese import simplified_characters, simplified_usage, to_traditional
from core.markup import check_translation, prose
from core.postedit import post_edit

PREDICTIONS = Path(__file__).parents[1] / "core/default_adapter/zh-tw/v3/report/predictions.jsonl"

# The only human translations of either snapshot (2024-07-20, 2024-10-19) with one of
# 么 里 后 几 范 余, the characters of SIMPLIFIED_PHRASES: 公里 and 里程 are Taiwan usage.
CORPUS_REFERENCES = [
    "假設一輛汽車以時速 40 公里的速率行駛 10 公里，然後再以時速 60 公里的速率行駛 10 公里，"
    "求汽車的平均速率？",
    "巢狀迴圈的循環類似於里程表，最右邊的元素在每次疊代時前進。",
]


def test_na_me_is_simplified_in_context_and_converted() -> None:
    text = "那么，無論是哪個子類別，都應該設為 :data:`None`。"
    assert simplified_characters(text) == []  # 么 alone is also a Traditional character
    assert simplified_usage(text) == ["那么"]
    assert "simplified characters: 那么" in check_translation("So, set it to None.", text)
    assert to_traditional("那么之后呢，什么在里面？") == "那麼之後呢，什麼在裡面？"
    assert post_edit(text, "Then set it to :data:`None`.") == text.replace("那么", "那麼")


def test_taiwan_usage_of_the_same_characters_is_not_flagged() -> None:
    for reference in CORPUS_REFERENCES:
        assert simplified_usage(prose(reference)) == []
        assert to_traditional(reference) == reference
    assert simplified_usage("么小的字，皇后與里長") == []


def test_held_out_outputs_have_one_simplified_phrase_and_none_after_post_edit() -> None:
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines()]
    flagged = [r for r in rows if simplified_usage(prose(r["output"]))]
    assert [simplified_usage(prose(r["output"])) for r in flagged] == [["那么"]]
    assert not any(simplified_usage(prose(r["reference"])) for r in rows)
    (row,) = flagged
    assert simplified_usage(prose(post_edit(row["output"], row["msgid"]))) == []
