"""run_monitoring end to end on small frames: drift recorded and alerted only when injected,
Evidently reports written with the sample size stated, matured cohorts only, the triggers'
contract, the reference taken from the champion's training window."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ml import crm
from ml.alerts.rules import report_alerts
from ml.config import load_settings
from ml.model import CATEGORICAL_FEATURES, LeadScorer, feature_columns
from ml.monitoring import run as monitoring_run
from ml.monitoring.reference import Reference, load_reference
from ml.monitoring.store import read_metrics
from ml.monitoring.triggers import ChampionInfo, drift_trigger, performance_trigger
from ml.scoring import assign_tiers

RUN_DATE = date(2026, 10, 1)
SOURCES = ["Web", "Referral", "Event", "Social"]


def features(n: int, seed: int, sources_p=(0.4, 0.3, 0.2, 0.1), activity=1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for name in feature_columns():
        if name == "lead_source":
            data[name] = rng.choice(SOURCES, n, p=list(sources_p))
        elif name in CATEGORICAL_FEATURES:
            data[name] = rng.choice(["a", "b", "c"], n)
        elif name == "engagement_score":
            data[name] = rng.gamma(2.0, 10.0 * activity / 1.5, n)
        else:
            data[name] = rng.poisson(activity, n)
    frame = pd.DataFrame(data)
    frame.insert(0, "lead_id", [f"L{seed:02d}{i:06d}" for i in range(n)])
    return frame


@pytest.fixture(scope="module")
def scorer() -> LeadScorer:
    train = features(3000, seed=1)
    rng = np.random.default_rng(0)
    y = (rng.random(len(train)) < 1 / (1 + np.exp(3 - train["engagement_score"] / 10))).astype(int)
    categorical = list(CATEGORICAL_FEATURES)
    categories = {c: sorted(train[c].unique()) for c in categorical}
    model = LeadScorer(feature_columns(), categorical, categories, xgb.Booster())
    dtrain = xgb.DMatrix(model.prepare(train), label=y, enable_categorical=True)
    model.booster = xgb.train(
        {"max_depth": 3, "nthread": 1, "objective": "binary:logistic"}, dtrain, num_boost_round=15
    )
    return model


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        overrides={"paths.data_dir": str(tmp_path), "monitoring.report_sample_size": 400}, env={}
    )


@pytest.fixture
def monitored(monkeypatch, scorer):
    monkeypatch.setattr(monitoring_run, "_load_model", lambda s, v: (scorer, "7"))
    ref = features(4000, seed=2)
    return Reference(
        ref[feature_columns()],
        scorer.predict_proba(ref),
        "test",
        "test reference (4,000 generated rows)",
    )


def test_no_drift_no_alert_and_reports_state_the_sample(settings, monitored, monkeypatch):
    from ml.monitoring import reports

    logged = []
    monkeypatch.setattr(
        reports,
        "log_to_champion_run",
        lambda s, v, paths, d: logged.append((v, sorted(paths))) or "run-1",
    )
    report = monitoring_run.run_monitoring(
        settings, RUN_DATE, current=features(3000, seed=3), reference=monitored
    )
    assert report.drifted_features == []
    assert [a.rule for a in report_alerts(settings, report)] == ["daily_report"]
    html = report.report_paths["data_drift_html"].read_text()
    assert "random sample of 400 of 4,000 reference rows and 400 of 3,000 current rows" in html
    assert json.loads(report.report_paths["prediction_drift_json"].read_text())["metrics"]
    assert logged == [("7", sorted(report.report_paths))] and report.mlflow_run_id == "run-1"
    psi = read_metrics(settings, "data_drift").query("metric == 'psi'")
    # every feature on the open population, every feature but the lead age on the recent intake
    # (the generated rows are all younger than 14 days)
    recent = psi[psi["feature"].str.endswith(" (recent intake)")]
    assert len(psi) - len(recent) == len(feature_columns())
    assert len(recent) == len(feature_columns()) - 1
    assert set(psi["status"]) == {"ok"} and set(psi["model_version"]) == {"7"}
    assert "no drift in the open population" in report.drift_verdict
    assert "no drift in the recent intake" in report.drift_verdict
    assert not drift_trigger(settings, ChampionInfo("7", None)).fire
    summary = report.summary()
    assert summary["drifted_features"] == [] and summary["model_version"] == "7"
    json.dumps(summary)  # Dagster metadata must be plain values


def test_injected_drift_is_flagged_recorded_and_alerted(settings, monitored):
    current = features(3000, seed=4, sources_p=(0.1, 0.1, 0.7, 0.1), activity=3.0)
    report = monitoring_run.run_monitoring(
        settings, RUN_DATE, current=current, reference=monitored, reports=False
    )
    assert "lead_source" in report.drifted_features
    assert "engagement_score" in report.drifted_features
    assert report.prediction_psi > 0.2  # more engagement, higher scores
    rules = [a.rule for a in report_alerts(settings, report)]
    assert rules[:3] == ["daily_report", "data_drift", "prediction_drift"]
    decision = drift_trigger(settings, ChampionInfo("7", None))
    assert decision.fire and "lead_source" in decision.reason
    tiers = read_metrics(settings, "prediction_drift").query("metric == 'current_share'")
    assert tiers["value"].sum() == pytest.approx(1.0)


def aged(frame: pd.DataFrame, seed: int, recent_sources_p=None) -> pd.DataFrame:
    """Give the rows lead ages 0–119 days; rows younger than 14 days draw their source from
    `recent_sources_p` when given."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    frame["days_since_created"] = rng.integers(0, 120, len(frame))
    if recent_sources_p is not None:
        young = frame["days_since_created"] < 14
        frame.loc[young, "lead_source"] = rng.choice(SOURCES, int(young.sum()), p=recent_sources_p)
    return frame


def test_a_mix_change_in_the_recent_intake_alerts_and_names_the_population(
    settings, scorer, monkeypatch
):
    monkeypatch.setattr(monitoring_run, "_load_model", lambda s, v: (scorer, "7"))
    reference = aged(features(12_000, seed=20), seed=21)
    ref = Reference(reference[feature_columns()], scorer.predict_proba(reference), "test", "test")
    # Event 0.2 -> 0.385 of the leads created in the last 14 days (x2.5): PSI ≈ 0.17 there
    current = aged(features(8_000, seed=22), seed=23, recent_sources_p=[0.308, 0.231, 0.384, 0.077])
    report = monitoring_run.run_monitoring(
        settings, RUN_DATE, current=current, reference=ref, reports=False
    )
    assert report.drifted_features == ["lead_source (recent intake)"]
    assert "DRIFT in the recent intake" in report.drift_verdict
    assert "no drift in the open population" in report.drift_verdict
    summary = report.summary()
    assert summary["drift_populations"]["recent_intake"]["drifted"] == ["lead_source"]
    assert summary["drift_populations"]["open"]["drifted"] == []
    alert = {a.rule: a for a in report_alerts(settings, report)}["data_drift"]
    assert alert.severity == "warning" and "lead_source (recent intake)" in alert.title
    rows = read_metrics(settings, "data_drift").set_index(["feature", "metric"])
    recent_psi = rows.loc[("lead_source (recent intake)", "psi")]
    assert recent_psi["status"] == "drift" and recent_psi["threshold"] == 0.1
    assert 0.1 < recent_psi["value"] < 0.2
    assert rows.loc[("lead_source", "psi"), "status"] == "ok"
    assert rows.loc[("lead_source (recent intake)", "tv_distance"), "threshold"] == 0.1
    # the retraining trigger stays PSI > 0.2 (original design): a moderate intake shift warns
    assert not drift_trigger(settings, ChampionInfo("7", None)).fire


def write_cohort(settings, scorer, day: date, frame: pd.DataFrame) -> None:
    p = scorer.predict_proba(frame)
    score = np.round(p * 100, 1)
    scores = pd.DataFrame(
        {
            "lead_id": frame["lead_id"],
            "probability": p,
            "score": score,
            "tier": assign_tiers(score, settings),
            "score_change": np.nan,
            "reasons_for": "[]",
            "reasons_against": "[]",
        }
    )
    engine = crm.crm_engine(settings)
    crm.write_scores(
        engine,
        scores,
        day,
        model_name="lead_scoring",
        model_version="7",
        scored_at=datetime(day.year, day.month, day.day, 2, tzinfo=UTC),
        run_id=f"test-{day}",
    )
    engine.dispose()


def test_performance_uses_matured_cohorts_only(settings, monitored, scorer):
    window = settings.features.label_window_days
    matured_day = RUN_DATE - timedelta(days=window + 5)
    young_day = RUN_DATE - timedelta(days=10)
    cohort = features(400, seed=5)
    write_cohort(settings, scorer, matured_day, cohort)
    write_cohort(settings, scorer, young_day, cohort)
    scored_at = pd.Timestamp(matured_day, tz="UTC") + pd.Timedelta(hours=2)
    created = scored_at - pd.Timedelta(days=20)
    # the top-scored half converts 10 days after scoring; one lead converts after the window
    # (label 0) and one converted before it was scored (dropped)
    order = np.argsort(-scorer.predict_proba(cohort))
    converts = cohort["lead_id"].to_numpy()[order[:200]]
    late, before = converts[0], converts[1]
    raw = settings.paths.raw_dir
    raw.mkdir(parents=True)
    pd.DataFrame({"lead_id": cohort["lead_id"], "created_at": created.isoformat()}).to_csv(
        raw / "leads.csv", index=False
    )
    when = {lid: scored_at + pd.Timedelta(days=10) for lid in converts}
    when[late] = scored_at + pd.Timedelta(days=window + 1)
    when[before] = scored_at - pd.Timedelta(days=1)
    pd.DataFrame(
        {
            "lead_id": list(when),
            "converted_at": [t.isoformat() for t in when.values()],
            "package_value": 1000,
        }
    ).to_csv(raw / "conversions.csv", index=False)

    report = monitoring_run.run_monitoring(
        settings, RUN_DATE, current=features(500, seed=6), reference=monitored, reports=False
    )
    perf = report.performance.set_index("metric")
    assert set(report.performance["cohort"]) == {str(matured_day)}
    assert perf.loc["n", "value"] == 399  # the lead converted before scoring is dropped
    assert perf.loc["positives", "value"] == 198  # 200 − late − before
    assert perf.loc["auc", "value"] > 0.99 and perf.loc["auc", "status"] == "ok"
    assert perf.loc["precision_at_k", "value"] == 39 / 40  # top 10 %: all but `late` convert
    business = report.business
    days = business.query("metric == 'median_days_to_close' and value == value")["value"]
    assert days.round(6).eq(30.0).all()  # created 20 days before scoring, converted 10 after
    share = business.query("metric == 'share'")["value"].sum()
    assert share == pytest.approx(1.0)
    decision = performance_trigger(settings, ChampionInfo("7", None))
    assert not decision.fire and str(matured_day) in decision.reason


def test_reference_is_the_champions_training_window_else_a_named_fallback(settings, scorer):
    marts = settings.paths.marts_dir
    marts.mkdir(parents=True)
    frames = []
    for i, day in enumerate(pd.date_range("2026-05-04", periods=10, freq="7D")):
        f = features(100, seed=10 + i)
        f["snapshot_ts"] = day
        frames.append(f)
    pd.concat(frames).to_parquet(marts / "lead_features.parquet", index=False)
    scorer.metadata = {
        "train_start": "2026-05-04",
        "validation_start": "2026-06-01",
        "test_start": "2026-06-15",
        "test_end": "2026-06-29",
    }
    try:
        ref = load_reference(settings, scorer, "7", RUN_DATE)
        assert ref.source == "mart" and len(ref.features) == 400 and len(ref.scores) == 300
        assert load_reference(settings, scorer, "7", RUN_DATE).source == "cache"
        assert str(marts / "lead_features.parquet") in ref.description
        # the data dir copied elsewhere: its cached reference names the copy's mart
        copy = settings.paths.data_dir.parent / f"{settings.paths.data_dir.name}-copy"
        shutil.copytree(settings.paths.data_dir, copy)
        moved = load_settings(overrides={"paths.data_dir": str(copy)}, env={})
        cached = load_reference(moved, scorer, "7", RUN_DATE)
        assert cached.source == "cache"
        assert str(moved.paths.marts_dir / "lead_features.parquet") in cached.description
        assert str(marts) not in cached.description
        assert cached.description.split(" of ")[0] == ref.description.split(" of ")[0]
        # a cache written before the window was kept apart: its path is replaced too
        meta = moved.paths.reports_dir / "reference" / "v7" / "reference.json"
        meta.write_text(json.dumps({"description": ref.description}))
        assert load_reference(moved, scorer, "7", RUN_DATE).description == cached.description
        scorer.metadata = {}
        fallback = load_reference(settings, scorer, "8", date(2026, 8, 1))
        assert fallback.source == "fallback" and "FALLBACK" in fallback.description
        assert len(fallback.features) == 500  # the 5 snapshots before 2026-06-02
    finally:
        scorer.metadata = {}


def test_service_latency_and_errors_from_the_prediction_log_raise_alerts(settings, monitored):
    from ml.serving.prediction_log import log_engine, prediction_log

    day = datetime(2026, 9, 30, 12)
    rows = [
        {
            "logged_at": day,
            "request_id": f"r{i}",
            "endpoint": "predict",
            "lead_id": f"L{i}",
            "mode": "off",
            "variant": "champion",
            "served": True,
            "model_name": "lead_scoring",
            "model_version": "7",
            "probability": 0.1,
            "score": 10.0,
            "tier": "C",
            "latency_ms": 250.0 if i % 10 == 0 else 20.0,
            "in_online_store": True,
            "status": "error" if i % 10 == 0 else "ok",
            "error": None,
        }
        for i in range(100)
    ]
    engine = log_engine(settings.serving.prediction_log_url)
    with engine.begin() as conn:
        conn.execute(prediction_log.insert(), rows)
    engine.dispose()
    report = monitoring_run.run_monitoring(
        settings, RUN_DATE, current=features(500, seed=7), reference=monitored, reports=False
    )
    figures = report.serving.set_index("metric")["value"]
    assert figures["requests"] == 100 and figures["error_rate"] == pytest.approx(0.1)
    assert figures["latency_p99_ms"] == pytest.approx(250.0)
    alerts = {a.rule: a.severity for a in report_alerts(settings, report)}
    assert alerts["latency_p99"] == "warning" and alerts["error_rate"] == "critical"


def report_verdicts(path) -> dict[tuple[str, str], bool]:
    """(column, method) -> drift, from the tests an Evidently report JSON records."""
    out = {}
    for test in json.loads(path.read_text())["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith("ValueDrift"):
            out[(params["column"], params["method"])] = test["status"] == "FAIL"
    return out


def test_evidently_reports_give_the_verdicts_the_store_holds(settings, scorer, monkeypatch):
    from ml.monitoring import reports

    monkeypatch.setattr(monitoring_run, "_load_model", lambda s, v: (scorer, "7"))
    monkeypatch.setattr(reports, "log_to_champion_run", lambda s, v, paths, d: None)
    settings = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"report_sample_size": 10_000})}
    )
    reference = aged(features(6_000, seed=30), seed=31)
    ref = Reference(reference[feature_columns()], scorer.predict_proba(reference), "test", "test")
    current = aged(
        features(6_000, seed=32, activity=2.2), seed=33, recent_sources_p=[0.1] * 3 + [0.7]
    )
    report = monitoring_run.run_monitoring(settings, RUN_DATE, current=current, reference=ref)
    # the sample holds every row and the frames have no missing values: the same figures
    store = read_metrics(settings, "data_drift")
    status = {
        (r.feature, r.metric): r.status == "drift"
        for r in store.itertuples()
        if r.metric in ("psi", "ks_pvalue", "chi2_pvalue")
    }
    names = reports.register_stattests(monitoring_run.drift.DriftThresholds.from_settings(settings))
    for key, suffix in (("data_drift_json", ""), ("recent_intake_drift_json", " (recent intake)")):
        verdicts = report_verdicts(report.report_paths[key])
        columns = [c for c in feature_columns() if not (suffix and c == "days_since_created")]
        assert sorted(c for c, m in verdicts if m == names["psi"]) == sorted(columns)
        # the KS / chi-square panel is drawn where the full-data figures flagged the column
        flagged = {c for c in columns
                   if status[(c + suffix, "psi")] or status.get((c + suffix, "ks_pvalue"))
                   or status.get((c + suffix, "chi2_pvalue"))}
        assert {c for c, m in verdicts if m != names["psi"]} == flagged
        assert flagged and len(flagged) < len(columns)
        for (column, method), drifted in verdicts.items():
            label = column + suffix
            if method == names["psi"]:
                assert drifted == status[(label, "psi")], label
            else:
                test = "ks" if method == names["ks"] else "chi2"
                assert drifted == status[(label, f"{test}_pvalue")], (label, method)
    assert any(status.values()) and not all(status.values())  # both verdicts occur
    assert status[("lead_source (recent intake)", "psi")] and not status[("lead_source", "psi")]
