"""Training: honest time cuts (no label past a fold's origin), refusal on thin data,
determinism, monotone engagement, every family, calibration, the model object (contributions,
save/load, MLflow pyfunc)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from ml.config import Settings, load_settings
from ml.errors import ConfigError, DataError
from ml.model import LABEL, Calibrator, LeadScorer, LeadScoringPyfunc, log_scorer
from ml.train import (
    Split,
    backtest_origins,
    choose_calibration,
    cut_at,
    final_split,
    fit_scorer,
    fit_tuned,
    snapshot_dates,
    split_by_time,
)


def _with(settings: Settings, **overrides: object) -> Settings:
    return load_settings(
        overrides={
            "paths.data_dir": str(settings.paths.data_dir),
            "training.xgboost.n_estimators": 300,
            "training.xgboost.learning_rate": 0.1,
            "training.backtest.folds": 4,
            "training.split.test_days": 14,
            **overrides,
        }
    )


# --- split -------------------------------------------------------------------------------------


def test_split_partitions_rows_without_overlap(split):
    keys = [
        set(zip(p.lead_id, p.snapshot_ts, strict=True))
        for p in (split.train, split.validation, split.test)
    ]
    assert not keys[0] & keys[1] and not keys[1] & keys[2] and not keys[0] & keys[2]


def test_no_learned_label_looks_past_the_fold_origin(training_frame, ml_settings):
    """Every training and validation label window (snapshot + label_window_days) closes on or
    before the fold's origin, for every fold of the backtest."""
    window = pd.Timedelta(days=ml_settings.features.label_window_days)
    origins = backtest_origins(training_frame, ml_settings)
    assert len(origins) == ml_settings.training.backtest.folds
    assert all((b - a).days == ml_settings.training.backtest.step_days
               for a, b in zip(origins, origins[1:], strict=False))
    for origin in origins:
        s = cut_at(training_frame, origin, ml_settings)
        for part in (s.train, s.validation):
            assert (snapshot_dates(part) + window).max() <= pd.Timestamp(origin)
        assert snapshot_dates(s.test).min() >= pd.Timestamp(origin)
        assert snapshot_dates(s.train).max() < pd.Timestamp(s.validation_start)


def test_a_leaking_embargo_is_refused(ml_settings):
    with pytest.raises(ConfigError, match=r"training\.split\.embargo_days 0 < .*label_window"):
        _with(ml_settings, **{"training.split.embargo_days": 0})
    longer = _with(ml_settings, **{"training.split.embargo_days": 90})
    assert longer.embargo_days == 90 and ml_settings.embargo_days == 60


def test_a_longer_embargo_moves_learning_back(training_frame, ml_settings, split):
    s = split_by_time(training_frame, _with(ml_settings, **{"training.split.embargo_days": 88}))
    assert s.origin == split.origin
    assert snapshot_dates(s.validation).max() <= pd.Timestamp(s.origin) - pd.Timedelta(days=88)
    assert len(s.train) < len(split.train)
    pd.testing.assert_frame_equal(s.test, split.test)


def test_split_raises_when_history_is_too_short(training_frame, ml_settings):
    recent = training_frame[snapshot_dates(training_frame) >= snapshot_dates(
        training_frame).max() - pd.Timedelta(days=70)]
    with pytest.raises(DataError, match="is empty.*provide more history"):
        split_by_time(recent, ml_settings)


def test_split_drops_unlabelled_rows(training_frame, ml_settings, split):
    frame = training_frame.astype({LABEL: "float"})
    last = snapshot_dates(frame) == snapshot_dates(frame).max()
    frame.loc[frame.index[last][:50], LABEL] = np.nan
    s = split_by_time(frame, ml_settings)
    assert len(s.test) == len(split.test) - 50


def test_final_split_learns_from_every_matured_label(training_frame, ml_settings):
    s = final_split(training_frame, ml_settings)
    assert len(s.train) + len(s.validation) == len(training_frame) and s.test.empty
    assert snapshot_dates(s.validation).max() == snapshot_dates(training_frame).max()


# --- training ----------------------------------------------------------------------------------


def test_refuses_to_train_on_too_few_positives(split, ml_settings):
    train = split.train.copy()
    positives = train.index[train[LABEL] == 1]
    train.loc[positives[10:], LABEL] = 0
    thin = Split(train, split.validation, split.test, split.train_start,
                 split.validation_start, split.test_start, split.test_end)
    with pytest.raises(DataError, match=r"10 positives.*training\.min_positive_examples"):
        fit_scorer(thin, ml_settings)


def test_training_is_deterministic(split, ml_settings, trained):
    again = fit_scorer(split, ml_settings, family="xgboost")
    assert again.scorer.model_bytes() == trained.scorer.model_bytes()
    assert again.best_iteration == trained.best_iteration
    assert again.calibration.to_dict() == trained.calibration.to_dict()
    np.testing.assert_array_equal(
        again.scorer.predict_proba(split.test), trained.scorer.predict_proba(split.test)
    )


@pytest.mark.parametrize("family", ["xgboost", "logistic"])
def test_more_engagement_never_lowers_the_score(split, ml_settings, family, trained):
    fit = trained if family == "xgboost" else fit_scorer(split, ml_settings, family=family)
    rows = split.test.head(400).reset_index(drop=True)
    base = fit.scorer.predict_proba(rows)
    names = [n for n, up in zip(fit.scorer.feature_names,
                                ml_settings.training.monotone(fit.scorer.feature_names),
                                strict=True) if up > 0]
    assert {"engagement_score", "website_visits", "n_meeting_booked_30d"} <= set(names)
    idle = rows.copy()
    idle["days_since_last_activity"] = idle["days_since_last_activity"] + 10
    assert (fit.scorer.predict_proba(idle) <= base + 1e-12).all(), "idle for longer"
    for name in names:
        more = rows.copy()
        more[name] = more[name] + (10 if name == "engagement_score" else 5)
        assert (fit.scorer.predict_proba(more) >= base - 1e-12).all(), name


def test_tree_model_beats_logistic_and_rules_on_nonlinear_data(split, ml_settings, trained):
    """The fabricated signal has interactions: on it the trees must win (the family choice is
    the backtest's, on real data)."""
    from sklearn.metrics import roc_auc_score

    y = split.test[LABEL]
    auc = {f: roc_auc_score(y, fit_scorer(split, ml_settings, family=f).scorer
                            .predict_proba(split.test)) for f in ("logistic", "rules")}
    tree = roc_auc_score(y, trained.scorer.predict_proba(split.test))
    assert tree > auc["logistic"] + 0.01 and tree > auc["rules"] + 0.05
    assert 0 < trained.best_iteration < 300


def test_linear_contributions_are_exact_and_missing_is_never_a_reason(split, ml_settings):
    fit = fit_scorer(split, ml_settings, family="logistic")
    rows = split.test.head(300).copy()
    margin, contributions, bias = fit.scorer.margin_and_contributions(rows)
    np.testing.assert_allclose(contributions.sum(1) + bias, margin, atol=1e-9)
    np.testing.assert_allclose(margin, fit.scorer.margin(rows), atol=1e-12)
    rows["country"] = None
    rows["industry"] = "Space mining"
    for scorer in (fit.scorer,):
        _, masked, _ = scorer.margin_and_contributions(rows, mask_missing=True)
        for name in ("country", "industry"):
            assert (masked[:, scorer.feature_names.index(name)] == 0).all()


def test_save_load_round_trip_of_every_family(split, ml_settings, tmp_path):
    for family in ("logistic", "rules"):
        fit = fit_scorer(split, ml_settings, family=family)
        request = fit_scorer(split, ml_settings, family="logistic",
                             features=ml_settings.training.request_features)
        fit.scorer.request_scorer = request.scorer
        fit.scorer.save(tmp_path / family)
        loaded = LeadScorer.load(tmp_path / family)
        assert loaded.family == family and loaded.request_scorer is not None
        np.testing.assert_array_equal(loaded.predict_proba(split.test),
                                      fit.scorer.predict_proba(split.test))
        np.testing.assert_array_equal(loaded.request_scorer.predict_proba(split.test),
                                      request.scorer.predict_proba(split.test))


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
    # Isotonic must buy a clear gain over the tie-free options to be chosen.
    _, strict = choose_calibration(3 * true_logit + 1.0, y, "auto", seed=0, isotonic_min_gain=0.5)
    assert strict.method in {"sigmoid", "none"}
    # An explicit choice is honoured; "none" fits nothing.
    assert choose_calibration(true_logit, y, "none", seed=0)[0] is None


def test_validation_log_loss_is_cross_fitted():
    """The log loss a search compares is the kept calibrator's out-of-fold figure: isotonic
    scored on the rows it was fitted on looks better than it is and would win unfairly."""
    rng = np.random.default_rng(5)
    true_logit = rng.normal(-2.5, 1.2, 3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    margin = 3 * true_logit + 1.0
    calibrator, report = choose_calibration(margin, y, "isotonic", seed=0)
    in_sample = log_loss(y, np.clip(calibrator.transform(margin), 1e-12, 1 - 1e-12))
    assert set(report.logloss) == {"isotonic"} | {"none"}
    assert report.logloss["isotonic"] > in_sample + 1e-4


def test_search_keeps_the_lowest_validation_log_loss(split, ml_settings):
    search = [{"max_depth": 1}, {"max_depth": 3}]
    fits = [fit_scorer(split, ml_settings, xgboost_overrides=o) for o in search]
    chosen = fit_tuned(split, ml_settings, family="xgboost", search=search)
    best = min(fits, key=lambda f: f.validation_logloss)
    assert chosen.params["max_depth"] == best.params["max_depth"]
    assert chosen.validation_logloss == best.validation_logloss
    for fit in fits:  # the figure compared is the kept calibration's cross-fitted one
        assert fit.validation_logloss == fit.calibration.logloss[fit.calibration.method]
    assert fits[0].validation_logloss != fits[1].validation_logloss
    # One candidate is fitted as it is, whatever training.xgboost_search says; its values are
    # typed and named as training.xgboost's (YAML's 2.0 is depth 2, n_jobs is xgboost's nthread).
    one = fit_tuned(split, ml_settings, family="xgboost", search=[{"max_depth": 2.0, "n_jobs": 1}])
    assert one.params["max_depth"] == 2 and one.params["nthread"] == 1
    assert "n_jobs" not in one.params


def test_platt_scaling_converges_on_over_confident_margins():
    """Newton's method from slope 1 overshot on margins 2-3 times too steep and diverged to
    slopes of ~1e12 (a step function) in 70 of 200 such fits of 400 rows; with its line search
    every fit lands on a slope below 1 and lowers the log loss."""
    rng = np.random.default_rng(0)
    for scale in (2.0, 3.0):
        for offset in (0.0, 1.0):
            for _ in range(10):
                logit = rng.normal(-3, 1.3, 400)
                y = (rng.random(400) < 1 / (1 + np.exp(-logit))).astype(int)
                margin = scale * logit + offset
                calibrator = Calibrator.fit("sigmoid", margin, y)
                assert 0 < calibrator.a < 1, (scale, offset, calibrator.a)
                p = np.clip(calibrator.transform(margin), 1e-12, 1 - 1e-12)
                raw = np.clip(1 / (1 + np.exp(-margin)), 1e-12, 1 - 1e-12)
                assert log_loss(y, p) < log_loss(y, raw)


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
