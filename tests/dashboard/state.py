"""A small, seeded, filled set of stores for the dashboard tests and screenshots.

Written with the stores' own writers and tables (ml.monitoring.store.record_metrics, the alert
log, ml.crm.write_scores, MLflow through its client and ml.registry.promote, the prediction-log
table) so the dashboard reads exactly what the pipeline writes, in a few seconds instead of a
full demo run. Not a test module: imported by conftest.py and screenshots.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ml.config import Settings, load_settings

RUN_DATES = [date(2026, 10, 1) + timedelta(days=7 * i) for i in range(6)]
FEATURES = [
    "lead_source",
    "industry",
    "engagement_score",
    "n_pricing_page_view_30d",
    "days_since_last_activity",
    "n_email_open_30d",
    "budget_band",
    "website_visits",
]
CATEGORICAL = {"lead_source", "industry", "budget_band"}
N_LEADS = 400
AB_LEADS = 600


def settings_for(data_dir: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(data_dir)})


def _monitoring(settings: Settings, rng: np.random.Generator) -> None:
    from ml.monitoring.store import record_metrics

    cfg = settings.monitoring
    for i, day in enumerate(RUN_DATES):
        run_id, version = f"{day:%Y%m%d}-v1", "1"
        rows = []
        for j, feature in enumerate(FEATURES):
            # engagement_score drifts more every week: the last two runs cross the threshold
            psi = 0.05 * i if feature == "engagement_score" else float(rng.uniform(0.001, 0.06))
            test = "chi2" if feature in CATEGORICAL else "ks"
            p = 1e-6 if psi > cfg.psi_threshold else float(rng.uniform(0.02, 0.9))
            rows += [
                {
                    "feature": feature,
                    "metric": "psi",
                    "value": psi,
                    "threshold": cfg.psi_threshold,
                    "status": "drift" if psi > cfg.psi_threshold else "ok",
                },
                {
                    "feature": feature,
                    "metric": f"{test}_pvalue",
                    "value": p,
                    "threshold": cfg.ks_pvalue,
                    "status": "drift" if p < cfg.ks_pvalue else "ok",
                },
                {
                    "feature": feature,
                    "metric": f"{test}_statistic",
                    "value": 0.01 * j,
                    "threshold": None,
                    "status": "info",
                },
            ]
        record_metrics(
            settings,
            pd.DataFrame(rows),
            run_date=day,
            run_id=run_id,
            scope="data_drift",
            model_version=version,
        )
        pred = [
            {
                "feature": "probability",
                "metric": "psi",
                "value": 0.02 + 0.01 * i,
                "threshold": cfg.psi_threshold,
                "status": "ok",
            },
            {
                "feature": "probability",
                "metric": "ks_pvalue",
                "value": 0.4,
                "threshold": 0.01,
                "status": "ok",
            },
            {
                "feature": "tier",
                "metric": "psi",
                "value": 0.01 + 0.005 * i,
                "threshold": cfg.psi_threshold,
                "status": "ok",
            },
        ]
        for tier, share in zip("ABCD", (0.1, 0.2, 0.3, 0.4), strict=True):
            pred += [
                {
                    "feature": f"tier_{tier}",
                    "metric": "reference_share",
                    "value": share,
                    "status": "info",
                },
                {
                    "feature": f"tier_{tier}",
                    "metric": "current_share",
                    "value": share + (0.02 * i if tier == "A" else -0.02 * i / 3),
                    "status": "info",
                },
            ]
        record_metrics(
            settings,
            pd.DataFrame(pred),
            run_date=day,
            run_id=run_id,
            scope="prediction_drift",
            model_version=version,
        )
        # matured cohorts: every run re-measures the cohorts 60+ days before it
        perf, business = [], []
        for k in range(i + 1):
            cohort = (RUN_DATES[k] - timedelta(days=63)).isoformat()
            auc = 0.80 - 0.012 * k + 0.001 * i  # later runs refine the figure slightly
            base = 0.08
            perf += [
                {
                    "cohort": cohort,
                    "metric": "auc",
                    "value": auc,
                    "threshold": cfg.auc_threshold,
                    "status": "ok" if auc >= cfg.auc_threshold else "breach",
                },
                {"cohort": cohort, "metric": "pr_auc", "value": auc - 0.45, "status": "info"},
                {
                    "cohort": cohort,
                    "metric": "precision_at_k",
                    "value": 0.3 - 0.01 * k,
                    "status": "info",
                },
                {"cohort": cohort, "metric": "n", "value": 1000 + 10 * k, "status": "info"},
                {"cohort": cohort, "metric": "positives", "value": 80 + k, "status": "info"},
                {"cohort": cohort, "metric": "base_rate", "value": base, "status": "info"},
                {
                    "cohort": cohort,
                    "metric": "mean_predicted",
                    "value": base + 0.004 * k,
                    "status": "info",
                },
                {"cohort": cohort, "metric": "ece", "value": 0.01 + 0.003 * k, "status": "info"},
                {"cohort": cohort, "metric": "brier", "value": 0.07, "status": "info"},
            ]
            for tier, rate, days in zip(
                "ABCD", (0.3, 0.12, 0.05, 0.02), (21, 30, 38, 45), strict=True
            ):
                business += [
                    {
                        "cohort": cohort,
                        "feature": tier,
                        "metric": "share",
                        "value": 0.25,
                        "status": "info",
                    },
                    {
                        "cohort": cohort,
                        "feature": tier,
                        "metric": "conversion_rate",
                        "value": rate * (1 - 0.03 * k),
                        "status": "info",
                    },
                    {
                        "cohort": cohort,
                        "feature": tier,
                        "metric": "lift_vs_base",
                        "value": rate / base,
                        "status": "info",
                    },
                    {
                        "cohort": cohort,
                        "feature": tier,
                        "metric": "median_days_to_close",
                        "value": days + k,
                        "status": "info",
                    },
                ]
            business += [
                {"cohort": cohort, "metric": "base_rate", "value": base, "status": "info"},
                {
                    "cohort": cohort,
                    "metric": "lift_a_over_base",
                    "value": (0.3 - 0.005 * k) / base,
                    "status": "info",
                },
            ]
        record_metrics(
            settings,
            pd.DataFrame(perf),
            run_date=day,
            run_id=run_id,
            scope="performance",
            model_version=version,
        )
        record_metrics(
            settings,
            pd.DataFrame(business),
            run_date=day,
            run_id=run_id,
            scope="business",
            model_version=version,
        )
        report_dir = settings.paths.reports_dir / "monitoring" / day.isoformat()
        report_dir.mkdir(parents=True, exist_ok=True)
        for name in ("data_drift", "prediction_drift"):
            (report_dir / f"{name}.html").write_text(
                f"<html><body><h1>{name} {day}</h1><p>Evidently stand-in</p></body></html>"
            )


def _alerts(settings: Settings) -> None:
    from ml.monitoring.store import alert_log, monitoring_engine

    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        ("data_drift:engagement_score", "data_drift", "warning", "slack", "sent", 5),
        ("data_drift:engagement_score", "data_drift", "warning", "email", "failed", 5),
        # The info alert inside the cool-down is the promotion's own (ml.registry.promote sends
        # it when _registry promotes v1).
        (
            "nightly_run_failure:20261104",
            "nightly_run_failure",
            "critical",
            "pagerduty",
            "sent",
            60 * 24 * 3,
        ),  # three days ago: past the cool-down, no longer open
    ]
    engine = monitoring_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            alert_log.insert(),
            [
                {
                    "alert_key": k,
                    "rule": r,
                    "severity": s,
                    "channel": c,
                    "status": st,
                    "attempts": 1,
                    "error": None,
                    "title": f"{r}: {k}",
                    "sent_at": now - timedelta(minutes=m),
                }
                for k, r, s, c, st, m in rows
            ],
        )
    engine.dispose()


def _scores(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probability = rng.beta(1.2, 6, n)
    score = np.round(probability * 100, 1)
    tier = np.select([score >= 40, score >= 20, score >= 8], ["A", "B", "C"], "D")
    return pd.DataFrame(
        {
            "lead_id": [f"L{i:07d}" for i in range(n)],
            "score": score,
            "tier": tier,
            "probability": probability,
            "score_change": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 3, n).round(1)),
            "reasons_for": [
                json.dumps(["Viewed the pricing page 3 times in 7 days", "Partner-agent lead"])
            ]
            * n,
            "reasons_against": [json.dumps(["No activity for 21 days"])] * n,
        }
    )


def _crm(settings: Settings) -> None:
    from ml.crm import crm_engine, write_scores

    engine = crm_engine(settings)
    for k, day in enumerate(RUN_DATES[-3:]):
        write_scores(
            engine,
            _scores(N_LEADS, seed=k),
            day,
            model_name="lead_scoring",
            model_version="1",
            scored_at=datetime(day.year, day.month, day.day, 2, tzinfo=UTC),
            run_id=f"score-{day}",
        )
    engine.dispose()


def _registry(settings: Settings) -> None:
    from ml.registry import CHALLENGER, mlflow_client, promote

    client = mlflow_client(settings)
    experiment = client.create_experiment(
        settings.registry.experiment, artifact_location=settings.paths.mlflow_artifacts.as_uri()
    )
    name = settings.registry.model_name
    client.create_registered_model(name)
    for auc in (0.8123, 0.8201):  # versions 1 and 2
        run = client.create_run(experiment)
        run_id = run.info.run_id
        for key, value in (("test_auc", auc), ("test_oracle_auc", 0.85), ("test_pr_auc", 0.35)):
            client.log_metric(run_id, key, value)
        for key, value in (
            ("training_rows", "12000"),
            ("training_snapshot_min", "2026-05-01T00:00:00+00:00"),
            ("training_snapshot_max", "2026-08-15T00:00:00+00:00"),
            ("test_window_start", "2026-08-22"),
            ("test_window_end", "2026-09-12"),
        ):
            client.set_tag(run_id, key, value)
        client.set_terminated(run_id)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id)
    client.set_registered_model_alias(name, CHALLENGER, "2")
    promote(settings, version=1, reason="dashboard fixture", actor="tests")


def _prediction_log(settings: Settings, rng: np.random.Generator) -> None:
    """An A/B test 70 days ago (matured) and 2 hours of traffic ending now."""
    from ml.serving.prediction_log import log_engine, prediction_log

    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    conversions = []
    for i in range(AB_LEADS):
        lead = f"L{i:07d}"
        variant = "challenger" if i % 2 else "champion"
        score = float(rng.uniform(0, 100))
        at = now - timedelta(days=70, minutes=int(rng.integers(0, 600)))
        rows.append((at, lead, "ab", variant, True, score, "ok"))
        if rng.random() < score / 100 * (0.5 if variant == "champion" else 0.6):
            conversions.append(
                {
                    "lead_id": lead,
                    "converted_at": (at + timedelta(days=20)).replace(tzinfo=UTC).isoformat(),
                }
            )
    for i in range(240):  # recent traffic in shadow mode: champion serves, challenger shadows
        at = now - timedelta(minutes=120 - i / 2)
        lead = f"L{i:07d}"
        rows.append(
            (
                at,
                lead,
                "shadow",
                "champion",
                True,
                float(rng.uniform(0, 100)),
                "error" if i % 40 == 0 else "ok",
            )
        )
        rows.append((at, lead, "shadow", "challenger", False, float(rng.uniform(0, 100)), "ok"))
    records = [
        {
            "logged_at": at,
            "request_id": f"r-{lead}-{at:%H%M%S%f}",
            "endpoint": "predict",
            "lead_id": lead,
            "mode": mode,
            "variant": variant,
            "served": served,
            "model_name": "lead_scoring",
            "model_version": "1" if variant == "champion" else "2",
            "probability": score / 100,
            "score": score,
            "tier": "A" if score >= 40 else "B" if score >= 20 else "C" if score >= 8 else "D",
            "latency_ms": float(rng.gamma(2.0, 6.0)),
            "in_online_store": True,
            "status": status,
            "error": None if status == "ok" else "boom",
        }
        for at, lead, mode, variant, served, score, status in rows
    ]
    # shadow rows share the request id of the served row they shadow
    for k in range(AB_LEADS, len(records), 2):
        records[k + 1]["request_id"] = records[k]["request_id"]
    engine = log_engine(settings.serving.prediction_log_url)
    with engine.begin() as conn:
        conn.execute(prediction_log.insert(), records)
    engine.dispose()
    settings.paths.raw_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(conversions, columns=["lead_id", "converted_at"]).to_csv(
        settings.paths.raw_dir / "conversions.csv", index=False
    )


def build_state(data_dir: Path, seed: int = 7) -> Settings:
    """Fill every store the dashboard reads under `data_dir`; returns its settings."""
    settings = settings_for(data_dir)
    rng = np.random.default_rng(seed)
    _monitoring(settings, rng)
    _alerts(settings)
    _crm(settings)
    _registry(settings)
    _prediction_log(settings, rng)
    return settings
