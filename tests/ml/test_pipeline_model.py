"""The model on the real pipeline: generated data → dbt → Feast training set → backtest.

These are the guarantees of the training issue, checked on generated data where the true
conversion probability (the oracle) is known.
"""

import numpy as np
import pandas as pd
import pytest

from ml.model import LABEL
from ml.registry import current_version, promote
from ml.retrain import ORACLE, promote_challenger, train_challenger
from ml.train import snapshot_dates, split_by_time
from ml.training_set import build_training_set


@pytest.fixture(scope="module")
def training_frame(pipeline_settings, feature_store):
    return build_training_set(pipeline_settings)


@pytest.fixture(scope="module")
def challenger(pipeline_settings, training_frame):
    return train_challenger(pipeline_settings, training_frame, actor="test")


def test_training_set_features_are_the_mart_row_of_each_snapshot(pipeline_settings, training_frame):
    """Feast's point-in-time join returns, for each (lead, snapshot), exactly the mart row of that
    snapshot: no later snapshot of the same lead leaks into an earlier row."""
    mart = pd.read_parquet(pipeline_settings.paths.marts_dir / "lead_features.parquet")
    mart["event_timestamp"] = pd.to_datetime(mart["snapshot_ts"], utc=True)
    sample = training_frame.sample(500, random_state=0)
    joined = sample.merge(mart, on=["lead_id", "event_timestamp"], suffixes=("", "_mart"))
    assert len(joined) == len(sample)
    for column in (
        "n_pricing_page_view_7d",
        "n_meeting_booked_30d",
        "engagement_score",
        "days_since_created",
        "website_visits",
    ):
        np.testing.assert_array_equal(
            joined[column].to_numpy(float), joined[f"{column}_mart"].to_numpy(float)
        )


def test_splits_are_ordered_in_time(pipeline_settings, training_frame):
    split = split_by_time(training_frame, pipeline_settings)
    assert snapshot_dates(split.train).max() < snapshot_dates(split.validation).min()
    assert snapshot_dates(split.validation).max() < snapshot_dates(split.test).min()


def test_backtest_structure_and_the_best_family_wins(pipeline_settings, challenger):
    """The figures come from ≥ 4 weekly out-of-time folds; the champion family is the best by
    mean AUC, reaches most of the oracle's lift and beats the hand-weighted rule."""
    b = challenger.summary()["backtest"]
    assert len(b["folds"]) == pipeline_settings.training.backtest.folds >= 4
    assert b["embargo_days"] >= pipeline_settings.features.label_window_days
    origins = [f["origin"] for f in b["folds"]]
    assert origins == sorted(origins) and len(set(origins)) == len(origins)
    means = {f: v["auc_mean"] for f, v in b["families"].items()}
    assert set(means) == {"xgboost", "logistic", "rules"}
    assert b["auc_mean"] >= max(means.values()) - pipeline_settings.training.tie_tolerance, b
    assert b["auc_mean"] >= b["baseline_rules_auc_mean"] + 0.02, b
    assert b["auc_ci95"][0] <= b["auc_mean"] <= b["auc_ci95"][1]
    assert b["lift_share_of_oracle_mean"] >= 0.80, b
    for fold in b["folds"]:
        assert 0.5 < fold["auc"] <= fold["oracle_auc"] + 0.02, fold
    request = b["request_model"]
    assert request["auc_mean"] > b["baseline_rules_auc_mean"], b
    assert challenger.training.scorer.request_scorer is not None
    assert challenger.training.scorer.family == b["champion_family"]


def test_retraining_on_the_same_data_is_deterministic(
    pipeline_settings, training_frame, challenger
):
    again = train_challenger(pipeline_settings, training_frame, actor="test")
    assert again.metrics == challenger.metrics
    assert again.training.scorer.model_bytes() == challenger.training.scorer.model_bytes()


def test_gate_refuses_a_model_trained_on_shuffled_labels(pipeline_settings, training_frame):
    first = promote_challenger(pipeline_settings, reason="test", actor="test")
    assert first.accepted, first.message
    champion = current_version(pipeline_settings)

    shuffled = training_frame.copy()
    shuffled[LABEL] = np.random.default_rng(0).permutation(shuffled[LABEL].to_numpy())
    shuffled = shuffled.drop(columns=[ORACLE])
    noise = train_challenger(pipeline_settings, shuffled, actor="test:shuffled")
    decision = promote(pipeline_settings, noise.version.version, reason="test", actor="test")
    assert not decision.accepted
    assert "min_auc" in decision.message
    assert current_version(pipeline_settings) == champion


def test_training_set_hash_is_the_version_tag(pipeline_settings, training_frame, challenger):
    from ml.registry import mlflow_client
    from ml.training_set import fingerprint

    version = mlflow_client(pipeline_settings).get_model_version(
        pipeline_settings.registry.model_name, str(challenger.version.version)
    )
    assert version.tags["training_fingerprint"] == fingerprint(training_frame).content_hash
