"""The model card (ml/model_card.py) from what a run recorded: intervals, segments, limits.

The card of a real registered version (the demo graph's champion) is checked in
tests/orchestration/test_full_graph.py; these tests feed `build_card` a recorded run by hand.
"""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml.backtest import mean_ci95
from ml.config import load_settings
from ml.errors import DataError
from ml.evaluate import auc_interval
from ml.model_card import build_card
from ml.serving.ab_report import auc_with_ci

FOLDS = [
    {"origin": "2026-08-01", "auc": 0.86, "pr_auc": 0.40, "brier": 0.05, "ece": 0.010,
     "precision_at_k": 0.30, "recall_at_k": 0.50, "f1": 0.35, "lift_share_of_oracle": 0.90,
     "xgboost_full_auc": 0.85},
    {"origin": "2026-08-08", "auc": 0.88, "pr_auc": 0.42, "brier": 0.04, "ece": 0.012,
     "precision_at_k": 0.32, "recall_at_k": 0.52, "f1": 0.36, "lift_share_of_oracle": 0.93,
     "xgboost_full_auc": 0.87},
    {"origin": "2026-08-15", "auc": 0.87, "pr_auc": 0.41, "brier": 0.05, "ece": 0.008,
     "precision_at_k": 0.31, "recall_at_k": 0.51, "f1": 0.35, "lift_share_of_oracle": 0.92,
     "xgboost_full_auc": 0.86},
    {"origin": "2026-08-22", "auc": 0.89, "pr_auc": 0.44, "brier": 0.04, "ece": 0.011,
     "precision_at_k": 0.33, "recall_at_k": 0.53, "f1": 0.37, "lift_share_of_oracle": 0.94,
     "xgboost_full_auc": 0.88},
]


def _evaluation(segments: list[dict], calibration: list[dict] | None = None) -> dict:
    return {
        "backtest": {
            "folds": FOLDS, "embargo_days": 60, "champion_family": "logistic",
            "families": {"xgboost": {"auc_mean": 0.865, "auc_ci95": [0.85, 0.88]},
                         "logistic": {"auc_mean": 0.875, "auc_ci95": [0.86, 0.89]}},
            "request_model": {"family": "logistic", "auc_mean": 0.80, "auc_ci95": [0.78, 0.82],
                              "baseline_rules_auc_mean": 0.72, "new_lead_days": 7},
            "oracle_auc_mean": 0.90,
        },
        "out_of_fold": {
            "metrics": {"n_rows": 4000, "n_positives": 200, "ece": 0.01, "brier": 0.045},
            "segments": segments,
            "calibration": calibration or [
                {"bin": 1, "n": 2000, "mean_predicted": 0.01, "observed_rate": 0.012,
                 "min_score": 0.0, "max_score": 0.03},
                {"bin": 2, "n": 2000, "mean_predicted": 0.09, "observed_rate": 0.15,
                 "min_score": 0.03, "max_score": 0.9},
            ],
        },
    }


TAGS = {
    "family": "logistic", "request_family": "logistic", "calibration": "isotonic",
    "training_rows": "12345", "training_snapshot_min": "2025-06-01T00:00:00+00:00",
    "training_snapshot_max": "2026-08-29T00:00:00+00:00", "test_window_start": "2026-08-01",
    "test_window_end": "2026-09-04", "git_commit": "abc", "config_hash": "def",
    "version.mlflow": "3.0", "unrelated": "x",
    "feature_service": json.dumps({"name": "lead_scoring", "features": {
        "lead_profile": ["lead_source", "industry"], "lead_engagement": ["email_opens"]}}),
}


def _card(segments: list[dict], **kwargs):
    return build_card(model="lead_scoring", version=3, run_id="r1", created="2026-11-01",
                      tags=TAGS, params={}, evaluation=_evaluation(segments, **kwargs),
                      settings=load_settings(env={}))


SEGMENTS = [
    {"segment": "lead_source", "level": "Web", "n": 3000, "positives": 150, "auc": 0.88},
    {"segment": "lead_source", "level": "Event", "n": 900, "positives": 12, "auc": 0.70},
    {"segment": "lead_source", "level": "Partner", "n": 100, "positives": 0, "auc": None},
    {"segment": "industry", "level": "Retail", "n": 2000, "positives": 60, "auc": 0.71},
]


def test_backtest_figures_are_the_folds_mean_with_their_t_interval():
    card = _card(SEGMENTS)
    auc = next(b for b in card.backtest if b["metric"] == "auc")
    mean, (low, high) = mean_ci95([f["auc"] for f in FOLDS])
    assert (auc["mean"], auc["ci95_low"], auc["ci95_high"]) == pytest.approx((mean, low, high))
    assert low < mean < high and auc["folds"] == 4
    assert {b["metric"] for b in card.backtest} >= {"pr_auc", "brier", "ece"}


def test_segment_intervals_are_hanley_mcneil_and_match_the_ab_reports():
    card = _card(SEGMENTS)
    web = next(s for s in card.segments if s["level"] == "Web")
    assert (web["ci95_low"], web["ci95_high"]) == pytest.approx(auc_interval(0.88, 150, 2850))
    # one formula: the A/B report's interval from raw scores is the same function
    y = [0, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    s = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.5, 0.3, 0.7, 0.6]
    auc, ci = auc_with_ci(np.array(y), np.array(s))
    assert auc == pytest.approx(roc_auc_score(y, s))
    assert ci == pytest.approx(auc_interval(auc, 4, 6))
    partner = next(s for s in card.segments if s["level"] == "Partner")
    assert partner["auc"] is None and partner["ci95_low"] is None


def test_limits_are_stated_from_the_figures():
    card = _card(SEGMENTS)
    text = "\n".join(card.limits)
    assert "lead_source = Event: only 12 conversions" in text
    assert "lead_source = Partner: no AUC" in text
    assert "industry = Retail: AUC 0.710 is below the gate's floor" in text
    assert "lead_source = Web" not in text  # enough conversions, above the floor
    # the worst calibration bin: 9 % predicted, 15 % observed
    assert "bin 2 of 2" in text and "under-confident by 6.0%" in text
    assert "request model (logistic, backtest AUC 0.8000 on leads in their first 7 days" in text
    assert "0.7200 for the engagement score alone" in text
    assert "snapshots 2025-06-01 → 2026-08-29" in text


def test_markdown_has_every_section_and_only_reproducibility_tags():
    md = _card(SEGMENTS).markdown()
    for heading in ("Data window", "Features", "Backtest", "Segment AUCs", "Calibration",
                    "Known limits", "Reproducibility"):
        assert f"## {heading}" in md
    assert "`email_opens`" in md and "| logistic (chosen) |" in md
    assert "`git_commit`" in md and "`version.mlflow`" in md and "unrelated" not in md


def test_a_run_without_backtest_figures_is_refused_by_name():
    with pytest.raises(DataError, match="v3 .*no backtest figures.*retrain"):
        build_card(model="lead_scoring", version=3, run_id="r1", created="2026-11-01",
                   tags=TAGS, params={}, evaluation={"out_of_fold": {"metrics": {}}},
                   settings=load_settings(env={}))
