"""Evaluation metrics against hand-computed values, evaluation of a trained model, and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml.config import load_settings
from ml.errors import DataError
from ml.evaluate import evaluate
from ml.model import LABEL
from ml.plots import plot_all
from ml.train import fit_scorer

# Ten rows ranked by score; four positives at ranks 1, 3, 4 and 7.
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
LABELS = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0])


class FixedScorer:
    """Stands in for LeadScorer: returns the scores of the rows' `score` column."""

    decision_threshold = 0.75

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["score"].to_numpy(float)


@pytest.fixture
def tiny(tmp_path):
    frame = pd.DataFrame(
        {
            "score": SCORES,
            LABEL: LABELS,
            "lead_source": ["A"] * 4 + ["B"] * 5 + ["C"],
            "industry": ["X"] * 10,
            "engagement_score": 100 * SCORES[::-1],  # a rule that ranks exactly backwards
        }
    )
    settings = load_settings(
        overrides={
            "paths.data_dir": str(tmp_path),
            "evaluation.top_k_fraction": 0.2,
            "evaluation.top_k_count": 5,
            "evaluation.decision_threshold": 0.55,
            "evaluation.calibration_bins": 5,
        }
    )
    return frame, settings


def test_metrics_match_hand_computed_values(tiny):
    frame, settings = tiny
    ev = evaluate(FixedScorer(), frame, settings, truth_probability=0.05 + 0.9 * LABELS)
    m = ev.metrics()
    # AUC: of 4 x 6 (positive, negative) pairs, 6 + 5 + 5 + 3 are ordered right.
    assert m["auc_roc"] == pytest.approx(19 / 24)
    # Average precision: mean precision at each positive's rank (1, 3, 4, 7).
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    # Top 20 % = 2 rows (one hit); top 5 rows (three hits).
    assert m["precision_at_top20pct"] == pytest.approx(0.5)
    assert m["recall_at_top20pct"] == pytest.approx(0.25)
    assert m["precision_at_top5"] == pytest.approx(0.6)
    assert m["recall_at_top5"] == pytest.approx(0.75)
    # Configured threshold 0.55 flags four rows, three of them positive.
    assert m["threshold"] == 0.55 and "configured" in ev.threshold_source
    assert m["precision_at_threshold"] == pytest.approx(0.75)
    assert m["recall_at_threshold"] == pytest.approx(0.75)
    assert m["f1_at_threshold"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx(1.8525 / 10)
    expected_ll = -np.mean(LABELS * np.log(SCORES) + (1 - LABELS) * np.log(1 - SCORES))
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Five equal-count bins of two rows: |pred - observed| = .075, .25, .45, .35, .35.
    assert m["ece"] == pytest.approx(2 * 1.475 / 10)
    assert [b["observed_rate"] for b in ev.calibration] == [0, 0.5, 0, 1, 0.5]
    # Deciles of one row each: the top row is a positive at a 40 % base rate.
    assert m["lift_top_decile"] == pytest.approx(2.5)
    assert ev.gains[2]["cumulative_gain"] == pytest.approx(0.5)
    # The rule ranks backwards; the oracle ranks perfectly.
    assert m["baseline_rules_auc"] == pytest.approx(5 / 24)
    assert m["auc_lift_vs_rules"] == pytest.approx(14 / 24)
    assert m["oracle_auc"] == 1.0
    assert m["auc_ratio_to_oracle"] == pytest.approx(19 / 24)


def test_segment_auc_with_counts_and_single_class_levels(tiny):
    frame, settings = tiny
    ev = evaluate(FixedScorer(), frame, settings)
    by_level = {(s["segment"], s["level"]): s for s in ev.segments}
    assert by_level[("lead_source", "A")] == {
        "segment": "lead_source",
        "level": "A",
        "n": 4,
        "positives": 3,
        "auc": 1 / 3,
    }
    assert by_level[("lead_source", "B")]["auc"] == pytest.approx(0.5)
    c = by_level[("lead_source", "C")]
    assert (c["n"], c["positives"]) == (1, 0) and math.isnan(c["auc"])
    assert by_level[("industry", "X")]["auc"] == pytest.approx(19 / 24)
    # NaN becomes null in JSON, and NaN metrics are left out of the flat dict.
    text = json.dumps(ev.to_dict(), allow_nan=False)
    assert '"auc": null' in text


def test_max_f1_threshold_comes_from_the_model(tiny):
    frame, _ = tiny
    settings = load_settings(overrides={"evaluation.top_k_count": 5})
    ev = evaluate(FixedScorer(), frame, settings)
    assert ev.threshold == 0.75 and "validation" in ev.threshold_source
    assert ev.at_threshold["precision"] == pytest.approx(0.5)  # 0.9 and 0.8 flagged


def test_evaluate_rejects_bad_input(tiny):
    frame, settings = tiny
    with pytest.raises(DataError, match=LABEL):
        evaluate(FixedScorer(), frame.drop(columns=[LABEL]), settings)
    with pytest.raises(DataError, match="truth_probability"):
        evaluate(FixedScorer(), frame, settings, truth_probability=np.ones(3))


def test_evaluate_trained_model(trained, split, ml_settings):
    from sklearn.metrics import roc_auc_score

    logistic = fit_scorer(split, ml_settings, family="logistic").scorer
    ev = evaluate(
        trained.scorer,
        split.test,
        ml_settings,
        truth_probability=split.test["p_true"].to_numpy(),
        baselines={"logistic": logistic},
    )
    m = ev.metrics()
    y = split.test[LABEL]
    assert m["baseline_logistic_auc"] == pytest.approx(
        roc_auc_score(y, logistic.predict_proba(split.test)))
    assert m["baseline_rules_auc"] == pytest.approx(
        roc_auc_score(y, split.test["engagement_score"]))
    assert m["auc_lift_vs_logistic"] > 0 and m["auc_lift_vs_rules"] > 0
    assert 0.9 < m["auc_ratio_to_oracle"] < 1.1
    assert m["threshold"] == pytest.approx(trained.scorer.decision_threshold)
    assert m["lift_top_decile"] > 2
    assert sum(g["positives"] for g in ev.gains) == m["n_positives"]
    assert all(isinstance(v, float) for v in m.values())
    json.dumps(ev.to_dict(), allow_nan=False)


def test_plots_are_written(trained, split, ml_settings, tmp_path):
    ev = evaluate(trained.scorer, split.test, ml_settings)
    paths = plot_all(ev, trained.scorer, tmp_path / "plots")
    assert set(paths) == {"roc", "pr", "calibration", "gains", "importance"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_equals_scikit_learn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    from ml.evaluate import _auc

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2_000)
    # rounded scores: many ties, which both must count one half
    score = np.round(rng.random(2_000) + 0.3 * y, 1)
    assert _auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert np.isnan(_auc(np.zeros(10), rng.random(10)))
