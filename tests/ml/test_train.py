"""Training: time split, refusal on thin data, determinism, baselines, calibration, the model
object (contributions, save/load, MLflow pyfunc)."""

from __future__ import annotations

from datetime import date

import mlflow
import numpy as np
import pandas as pd
import pytest

from ml.config import Settings, load_settings
from ml.errors import DataError
from ml.model import LABEL, LeadScorer, LeadScoringPyfunc, log_scorer
from ml.train import (
    Split,
    choose_calibration,
    snapshot_dates,
    split_by_time,
    train_model,
)


def _with(settings: Settings, **overrides: object) -> Settings:
    return load_settings(
        overrides={
            "paths.data_dir": str(settings.paths.data_dir),
            "training.xgboost.n_estimators": 300,
            "training.xgboost.learning_rate": 0.1,
            **overrides,
        }
    )


# --- split -------------------------------------------------------------------------------------


def test_split_partitions_rows_without_overlap(training_frame, split):
    keys = [
        set(zip(p.lead_id, p.snapshot_ts, strict=True))
        for p in (split.train, split.validation, split.test)
    ]
    assert not keys[0] & keys[1] and not keys[1] & keys[2] and not keys[0] & keys[2]
    assert sum(len(k) for k in keys) == len(training_frame)


def test_split_orders_snapshots_in_time(split):
    """No row of a later split is older than any row of an earlier one, for any lead."""
    train, val, test = (snapshot_dates(p) for p in (split.train, split.validation, split.test))
    assert train.max() < val.min() and val.max() < test.min()
    assert val.min() >= pd.Timestamp(split.validation_start) > train.max()
    assert test.min() >= pd.Timestamp(split.test_start) > val.max()
    # The default windows: the last 21 days are test, the 21 before validation.
    assert (split.test_end - split.test_start).days == 20
    assert (split.test_start - split.validation_start).days == 21


def test_split_explicit_dates_win(training_frame, ml_settings):
    settings = _with(
        ml_settings,
        **{
            "training.split.train_start": "2026-05-01",
            "training.split.validation_start": "2026-07-01",
            "training.split.test_start": "2026-08-01",
        },
    )
    s = split_by_time(training_frame, settings)
    assert (s.train_start, s.validation_start, s.test_start) == (
        date(2026, 5, 1),
        date(2026, 7, 1),
        date(2026, 8, 1),
    )
    assert snapshot_dates(s.train).min() >= pd.Timestamp("2026-05-01")
    assert snapshot_dates(s.train).max() < pd.Timestamp("2026-07-01")
    assert snapshot_dates(s.test).min() >= pd.Timestamp("2026-08-01")


def test_split_embargo_drops_training_rows_near_validation(training_frame, ml_settings, split):
    s = split_by_time(training_frame, _with(ml_settings, **{"training.split.embargo_days": 28}))
    gap = pd.Timestamp(s.validation_start) - snapshot_dates(s.train).max()
    assert gap.days > 28 - 7 and len(s.train) < len(split.train)
    pd.testing.assert_frame_equal(s.test, split.test)


def test_split_raises_when_a_part_is_empty(training_frame, ml_settings):
    settings = _with(
        ml_settings,
        **{
            "training.split.validation_start": "2026-08-20",
            "training.split.test_start": "2027-01-01",
        },
    )
    with pytest.raises(DataError, match="test split is empty"):
        split_by_time(training_frame, settings)


def test_split_drops_unlabelled_rows(training_frame, ml_settings, split):
    frame = training_frame.astype({LABEL: "float"})
    frame.loc[frame.index[-50:], LABEL] = np.nan
    s = split_by_time(frame, ml_settings)
    assert len(s.test) == len(split.test) - 50


# --- training ----------------------------------------------------------------------------------


def test_refuses_to_train_on_too_few_positives(split, ml_settings):
    train = split.train.copy()
    positives = train.index[train[LABEL] == 1]
    train.loc[positives[10:], LABEL] = 0
    thin = Split(
        train,
        split.validation,
        split.test,
        split.train_start,
        split.validation_start,
        split.test_start,
        split.test_end,
    )
    with pytest.raises(DataError, match=r"10 positives.*training\.min_positive_examples"):
        train_model(thin, ml_settings)


def test_training_is_deterministic(split, ml_settings, trained):
    again = train_model(split, ml_settings)
    assert again.scorer.model_bytes() == trained.scorer.model_bytes()
    assert again.best_iteration == trained.best_iteration
    assert again.calibration.to_dict() == trained.calibration.to_dict()
    np.testing.assert_array_equal(
        again.scorer.predict_proba(split.test), trained.scorer.predict_proba(split.test)
    )
    assert again.baselines.logistic_test_auc == trained.baselines.logistic_test_auc


def test_model_beats_logistic_and_rules_baselines(split, trained):
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(split.test[LABEL], trained.scorer.predict_proba(split.test))
    assert auc > trained.baselines.logistic_test_auc + 0.02
    assert auc > trained.baselines.rules_test_auc + 0.1
    assert 0 < trained.best_iteration < 300


def test_calibration_keeps_what_lowers_brier():
    rng = np.random.default_rng(3)
    true_logit = rng.normal(-2.5, 1.2, 6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    # An overconfident model: right ranking, margins three times too large.
    calibrator, report = choose_calibration(3 * true_logit + 1.0, y, "auto", seed=0)
    assert report.method in {"isotonic", "sigmoid"} and calibrator is not None
    assert report.brier[report.method] == min(report.brier.values())
    assert report.brier[report.method] < report.brier["none"] - 0.01
    # Already calibrated margins: every candidate is judged out-of-fold against "none".
    _, report = choose_calibration(true_logit, y, "auto", seed=0)
    assert report.brier[report.method] == min(report.brier.values())
    # An explicit choice is honoured; "none" fits nothing.
    assert choose_calibration(true_logit, y, "none", seed=0)[0] is None


def test_calibration_report_of_training(trained):
    report = trained.calibration
    assert set(report.brier) == {"none", "isotonic", "sigmoid"}
    assert report.brier[report.method] == min(report.brier.values())
    assert 0 < trained.scorer.decision_threshold < 1


# --- the model object --------------------------------------------------------------------------


@pytest.mark.parametrize("approximate", [True, False])
def test_contributions_add_up_to_margin(trained, split, approximate):
    rows = split.test.head(300)
    contributions, bias = trained.scorer.contributions(rows, approximate=approximate)
    assert contributions.shape == (300, len(trained.scorer.feature_names))
    np.testing.assert_allclose(contributions.sum(1) + bias, trained.scorer.margin(rows), atol=1e-4)


def test_prepare_handles_unseen_levels_and_reports_missing_columns(trained, split):
    scorer = trained.scorer
    rows = split.test.head(5).copy()
    rows["industry"] = "Space mining"
    prepared = scorer.prepare(rows)
    assert prepared["industry"].isna().all()
    assert list(prepared.columns) == scorer.feature_names
    assert np.isfinite(scorer.predict_proba(rows)).all()
    with pytest.raises(DataError, match="visa_quota"):
        scorer.prepare(rows.drop(columns=["visa_quota"]))


def test_prepare_accepts_nullable_and_arrow_dtypes(trained, split):
    rows = split.test.head(200)
    converted = rows.astype(
        {
            "industry": "string[pyarrow]",
            "company_size": "Int64",
            "days_since_last_activity": "double[pyarrow]",
        }
    )
    np.testing.assert_array_equal(
        trained.scorer.predict_proba(converted), trained.scorer.predict_proba(rows)
    )


def test_column_order_and_category_order_do_not_matter(trained, split):
    rows = split.test.head(200)
    shuffled = rows[rows.columns[::-1]].copy()
    shuffled["industry"] = pd.Categorical(
        shuffled["industry"], categories=sorted(rows.industry.unique())[::-1]
    )
    np.testing.assert_array_equal(
        trained.scorer.predict_proba(shuffled), trained.scorer.predict_proba(rows)
    )


def test_save_load_round_trip(trained, split, tmp_path):
    trained.scorer.save(tmp_path / "scorer")
    loaded = LeadScorer.load(tmp_path / "scorer")
    np.testing.assert_array_equal(
        loaded.predict_proba(split.test), trained.scorer.predict_proba(split.test)
    )
    assert loaded.categories == trained.scorer.categories
    assert loaded.decision_threshold == trained.scorer.decision_threshold
    with pytest.raises(DataError, match="no saved model"):
        LeadScorer.load(tmp_path / "nothing")


def test_pyfunc_logs_and_loads(trained, split, tmp_path):
    from ml.registry import fluent_uris

    # The store, its artefacts and MLflow's global URIs all stay in this test's folder: a
    # global URI left set (MLflow also exports it as MLFLOW_TRACKING_URI, which load_settings
    # reads) would send every later test's registry to ./mlflow.db in the working directory.
    settings = load_settings(overrides={"paths.data_dir": str(tmp_path)})
    (tmp_path / "mlflow").mkdir()
    with fluent_uris(settings):
        experiment = mlflow.create_experiment(
            "test", artifact_location=(tmp_path / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment):
            info = log_scorer(trained.scorer, registered_model_name="lead_scoring_test")
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        rows = split.test.head(100)
        np.testing.assert_allclose(
            np.asarray(loaded.predict(rows)), trained.scorer.predict_proba(rows)
        )
        python_model = loaded.unwrap_python_model()
        assert isinstance(python_model, LeadScoringPyfunc)
        assert python_model.scorer.feature_names == trained.scorer.feature_names
        registered = mlflow.pyfunc.load_model("models:/lead_scoring_test/1")
        np.testing.assert_allclose(
            np.asarray(registered.predict(rows)), trained.scorer.predict_proba(rows)
        )


def test_fabricated_frame_is_seeded(make_frame):
    pd.testing.assert_frame_equal(make_frame(n_leads=200, seed=5), make_frame(n_leads=200, seed=5))
