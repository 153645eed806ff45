"""polingo eval's calibration report (training/calibration.py): confidence deciles,
Spearman's rho, the top decile's exact share, and MBR against greedy."""

from __future__ import annotations

import pytest

from core.settings import Settings
from service.translator import Outcome
from training.calibration import calibration, mbr_metrics, sentence_chrf, spearman
from training.data import Pair
from training.evaluate import _scores


def test_spearman_matches_the_textbook_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their average rank: ranks x (1, 2.5, 2.5, 4), y (1, 2, 3, 4)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)


def test_deciles_order_drafts_by_confidence() -> None:
    references = [f"回傳第 {i} 個元素的串列。" for i in range(20)]
    # the surer the draft, the closer to its reference
    outputs = [r if i >= 18 else r[: 1 + i // 2] for i, r in enumerate(references)]
    confidences = [i / 20 for i in range(20)]
    metrics = calibration(references, outputs, confidences)
    assert metrics["calib_drafts"] == 20
    chrf = [metrics[f"calib_chrf_d{d}"] for d in range(1, 11)]
    assert chrf == sorted(chrf) and chrf[-1] == 100
    assert metrics["calib_conf_d1"] == 0.025 and metrics["calib_conf_d10"] == 0.925
    assert metrics["calib_spearman"] > 0.95 and metrics["calib_top_exact"] == 1.0
    # drafts without a confidence (memory answers) are left out
    assert calibration(references, outputs, [None] * 20) == {"calib_drafts": 0.0}


def test_mbr_against_greedy_on_prose() -> None:
    sources = ["Return a list.", "x = 1"]
    references = ["回傳一個串列。", "x = 1"]
    assert mbr_metrics(sources, references, references, references, 1) == {}
    metrics = mbr_metrics(sources, references, references, ["傳回清單。", "x = 1"], 8)
    assert metrics["mbr_candidates"] == 8 and metrics["mbr_gain_prose"] > 50


def test_eval_scores_report_calibration_and_predictions_confidence() -> None:
    pairs = [Pair(f"Item {i}.", f"第 {i} 項。") for i in range(12)]
    outcomes = [
        Outcome(p.msgstr if i > 5 else "項目。", "項目。", False, [], False, i / 12)
        for i, p in enumerate(pairs)
    ]
    outcomes[0] = outcomes[0]._replace(from_memory=True, confidence=1.0)
    result = _scores("zh@v1", pairs, outcomes, Settings(candidates=4))
    assert result.metrics["calib_drafts"] == 11  # the memory answer left out
    assert result.metrics["calib_spearman"] > 0.8
    assert result.metrics["calib_top_exact"] == 1.0
    refs, outs = [p.msgstr for p in pairs], [o.text for o in outcomes]
    assert result.metrics["mbr_gain_prose"] > 0
    assert sentence_chrf(refs[6:], outs[6:]) == [100.0] * 6


def test_evaluation_asks_for_logprobs_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """POLINGO_CONFIDENCE=0 (a serving choice) would leave eval's calibration empty: the
    evaluation opens its engine with the confidence on. The run itself is replaced by one
    that records its settings (no engine starts)."""
    import training.evaluate as evaluate
    from core.registry import Registry

    seen: list[Settings] = []

    async def record(settings, refs, sets):  # noqa: ANN001, ANN202
        seen.append(settings)
        return []

    monkeypatch.setattr(evaluate, "_evaluate", record)
    monkeypatch.setenv("POLINGO_CONFIDENCE", "0")
    assert Settings.from_env().confidence is False
    evaluate.evaluate_splits(Registry(tmp_path), ["zh@v1"], {"pair": []})
    evaluate.evaluate_splits(Registry(tmp_path), ["zh@v1"], {"pair": []}, {"candidates": 2})
    assert [(s.confidence, s.candidates) for s in seen] == [(True, 1), (True, 2)]
