"""A monitoring run: drift, matured-label performance and business metrics for one date.

`run_monitoring` is what the CLI (`lead-scoring monitor`) and the Dagster monitoring assets
call; `send_alerts` turns its report into routed alerts. Every figure is recorded in the
monitoring store under run id `<run_date>-v<version>` (re-running a date replaces its figures).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.config import Settings
from ml.errors import DataError
from ml.model import LeadScorer
from ml.monitoring import drift
from ml.monitoring.performance import matured_performance
from ml.monitoring.reference import Reference, load_current, load_reference
from ml.monitoring.store import record_run

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")


@dataclass
class MonitoringReport:
    """Everything one monitoring run measured (frames in the store's row shape) and wrote."""

    run_date: date
    run_id: str
    model_version: str
    reference_source: str
    reference_description: str
    reference_rows: int
    current_rows: int
    # one row per feature and population: drift.FeatureDrift fields plus `column` and
    # `population`; `feature` is the label (the recent intake's carry drift.RECENT_SUFFIX)
    data_drift: pd.DataFrame
    prediction_drift: pd.DataFrame  # store rows: feature probability | tier | tier_<X>
    performance: pd.DataFrame  # store rows per matured cohort
    business: pd.DataFrame  # store rows per matured cohort and tier
    serving: pd.DataFrame  # p99 latency and error rate of the day before, from the prediction log
    performance_note: str = ""
    drift_populations: list[drift.Population] = field(default_factory=list)
    report_paths: dict[str, Path] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    seconds: float = 0.0

    @property
    def drifted_features(self) -> list[str]:
        return sorted(self.data_drift.loc[self.data_drift["psi_drifted"], "feature"])

    @property
    def drift_verdict(self) -> str:
        """Which population drifted on which features (or the largest PSI of each)."""
        return drift.PopulationDrift(self.data_drift, self.drift_populations).verdict()

    @property
    def prediction_psi(self) -> float:
        rows = self.prediction_drift
        hit = rows[(rows["feature"] == "probability") & (rows["metric"] == "psi")]
        return float(hit["value"].iloc[0]) if len(hit) else float("nan")

    def latest_cohort_auc(self) -> tuple[str | None, float | None]:
        auc = self.performance[self.performance["metric"] == "auc"]
        if auc.empty:
            return None, None
        last = auc.sort_values("cohort").iloc[-1]
        return str(last["cohort"]), float(last["value"])

    def summary(self) -> dict[str, Any]:
        """Plain values for Dagster metadata, the CLI and the daily-report alert."""
        cohort, auc = self.latest_cohort_auc()
        tiers = self.prediction_drift[self.prediction_drift["metric"] == "current_share"]
        return {
            "run_id": self.run_id,
            "run_date": self.run_date.isoformat(),
            "model_version": self.model_version,
            "reference": self.reference_description,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features_monitored": int((self.data_drift["population"] == drift.OPEN).sum())
            if len(self.data_drift)
            else 0,
            "drifted_features": self.drifted_features,
            "drift_verdict": self.drift_verdict,
            "drift_populations": {
                p.name: {
                    "current_rows": p.current_rows,
                    "reference_rows": p.reference_rows,
                    "judged": p.judged,
                    "psi_threshold": p.psi_threshold,
                    "drifted": sorted(
                        self.data_drift.loc[
                            self.data_drift["psi_drifted"]
                            & (self.data_drift["population"] == p.name),
                            "column",
                        ]
                    ),
                }
                for p in self.drift_populations
            },
            "max_psi": round(float(self.data_drift["psi"].max()), 4)
            if len(self.data_drift)
            else None,
            "worst_feature": str(self.data_drift["feature"].iloc[0])
            if len(self.data_drift)
            else None,
            "prediction_psi": round(self.prediction_psi, 4),
            "tier_mix": {
                str(r.feature).removeprefix("tier_"): round(float(r.value), 4)
                for r in tiers.itertuples()
            },
            "matured_cohorts": int(self.performance["cohort"].nunique())
            if len(self.performance)
            else 0,
            "latest_cohort": cohort,
            "latest_cohort_auc": None if auc is None or np.isnan(auc) else round(auc, 4),
            "performance_note": self.performance_note,
            "reports": {k: str(v) for k, v in self.report_paths.items()},
            "mlflow_run_id": self.mlflow_run_id,
            "seconds": round(self.seconds, 2),
        }


def _load_model(settings: Settings, model_version: str | None) -> tuple[LeadScorer, str]:
    from ml.registry import load_version

    scorer, version = load_version(settings, model_version or "champion")
    return scorer, str(version)


def _data_drift_rows(
    frame: pd.DataFrame, populations: list[drift.Population], settings: Settings
) -> pd.DataFrame:
    """Store rows per feature label: psi (the alert verdict), the test's p-value and effect size
    (both with the test verdict: p below its threshold and effect at least its minimum), and
    the raw chi-square statistic."""
    cfg = settings.monitoring
    psi_threshold = {p.name: p.psi_threshold for p in populations}
    rows = []
    for r in frame.itertuples():
        p_threshold = cfg.ks_pvalue if r.test == "ks" else cfg.chi2_pvalue
        min_effect = cfg.ks_min_statistic if r.test == "ks" else cfg.chi2_min_distance
        test_status = "drift" if r.test_drifted else "ok"
        rows += [
            {
                "feature": r.feature,
                "metric": "psi",
                "value": r.psi,
                "threshold": psi_threshold.get(r.population, cfg.psi_threshold),
                "status": "drift" if r.psi_drifted else "ok",
            },
            {
                "feature": r.feature,
                "metric": f"{r.test}_pvalue",
                "value": r.p_value,
                "threshold": p_threshold,
                "status": test_status,
            },
            {
                "feature": r.feature,
                "metric": r.effect,
                "value": r.effect_size,
                "threshold": min_effect,
                "status": test_status,
            },
        ]
        if r.test == "chi2":
            rows.append(
                {
                    "feature": r.feature,
                    "metric": "chi2_statistic",
                    "value": r.statistic,
                    "threshold": None,
                    "status": "info",
                }
            )
    return pd.DataFrame(rows)


def prediction_drift(
    reference_scores: np.ndarray, current_scores: np.ndarray, settings: Settings
) -> pd.DataFrame:
    """PSI and KS of the probability, PSI and chi-square of the tier mix (each test with its
    effect size: KS statistic, total variation distance), and the tier shares (store rows)."""
    from ml.scoring import assign_tiers

    cfg = settings.monitoring
    ref = pd.Series(np.asarray(reference_scores, dtype=float))
    cur = pd.Series(np.asarray(current_scores, dtype=float))
    score = drift.feature_drift(
        "probability",
        ref,
        cur,
        categorical=False,
        bins=cfg.psi_bins,
        psi_threshold=cfg.psi_threshold,
        p_value_threshold=cfg.ks_pvalue,
        min_effect=cfg.ks_min_statistic,
    )
    ref_tier = pd.Series(assign_tiers(np.round(ref.to_numpy() * 100, 1), settings))
    cur_tier = pd.Series(assign_tiers(np.round(cur.to_numpy() * 100, 1), settings))
    tier = drift.feature_drift(
        "tier",
        ref_tier,
        cur_tier,
        categorical=True,
        psi_threshold=cfg.psi_threshold,
        p_value_threshold=cfg.chi2_pvalue,
        min_effect=cfg.chi2_min_distance,
    )
    rows = []
    for d, p_threshold, min_effect in (
        (score, cfg.ks_pvalue, cfg.ks_min_statistic),
        (tier, cfg.chi2_pvalue, cfg.chi2_min_distance),
    ):
        rows += [
            {
                "feature": d.feature,
                "metric": "psi",
                "value": d.psi,
                "threshold": cfg.psi_threshold,
                "status": "drift" if d.psi_drifted else "ok",
            },
            {
                "feature": d.feature,
                "metric": f"{d.test}_pvalue",
                "value": d.p_value,
                "threshold": p_threshold,
                "status": "drift" if d.test_drifted else "ok",
            },
            {
                "feature": d.feature,
                "metric": d.effect,
                "value": d.effect_size,
                "threshold": min_effect,
                "status": "drift" if d.test_drifted else "ok",
            },
        ]
    for t in TIERS:
        rows += [
            {
                "feature": f"tier_{t}",
                "metric": "reference_share",
                "value": float((ref_tier == t).mean()),
                "threshold": None,
                "status": "info",
            },
            {
                "feature": f"tier_{t}",
                "metric": "current_share",
                "value": float((cur_tier == t).mean()),
                "threshold": None,
                "status": "info",
            },
        ]
    rows.append(
        {
            "feature": "probability",
            "metric": "current_mean",
            "value": float(cur.mean()),
            "threshold": None,
            "status": "info",
        }
    )
    rows.append(
        {
            "feature": "probability",
            "metric": "reference_mean",
            "value": float(ref.mean()),
            "threshold": None,
            "status": "info",
        }
    )
    return pd.DataFrame(rows)


def service_health(settings: Settings, run_date: date) -> pd.DataFrame:
    """p99 latency, error rate and request count of the served predictions logged in the day
    before `run_date` (UTC), from the service's prediction log (store rows, scope "serving");
    empty when there is no log or no request."""
    from datetime import datetime, timedelta

    import sqlalchemy as sa

    try:
        from ml.serving.prediction_log import log_engine, prediction_log

        url = settings.serving.prediction_log_url  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return pd.DataFrame()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return pd.DataFrame()
    start = datetime.combine(run_date - timedelta(days=1), datetime.min.time())
    t = prediction_log.c
    query = sa.select(t.latency_ms, t.status).where(
        t.logged_at >= start, t.logged_at < start + timedelta(days=1), t.served.is_(True)
    )
    engine = log_engine(url)
    try:
        with engine.connect() as conn:
            log_rows = pd.read_sql(query, conn)
    finally:
        engine.dispose()
    if log_rows.empty:
        return pd.DataFrame()
    a = settings.alerting
    p99 = float(np.percentile(log_rows["latency_ms"], 99))
    errors = float((log_rows["status"] != "ok").mean())
    return pd.DataFrame(
        [
            {"metric": "requests", "value": len(log_rows), "threshold": None, "status": "info"},
            {
                "metric": "latency_p99_ms",
                "value": p99,
                "threshold": a.latency_p99_ms,
                "status": "breach" if p99 > a.latency_p99_ms else "ok",
            },
            {
                "metric": "error_rate",
                "value": errors,
                "threshold": a.error_rate_threshold,
                "status": "breach" if errors > a.error_rate_threshold else "ok",
            },
        ]
    )


def run_monitoring(
    settings: Settings,
    run_date: date,
    *,
    current: pd.DataFrame | None = None,
    model_version: str | None = None,
    reference: Reference | None = None,
    reports: bool = True,
) -> MonitoringReport:
    """Monitor the champion (or `model_version`) for `run_date`.

    Data drift of each model feature (current vs the champion's training window), for every
    open lead and for the recent intake against reference leads of the same age (see
    ml/monitoring/drift.py; `drift_verdict` says which population drifted on what), prediction
    drift (current scores vs its test-window scores, tier mix), Evidently reports on a sample
    (logged to the champion's MLflow run), matured-label performance and business metrics per
    cohort; everything recorded in the monitoring store.

    Args:
        current: the features being scored (default: the `lead_features_latest` mart). A
            `probability` column, if present, is used as the current scores; otherwise the
            model scores the frame (the same function batch scoring uses, so the same numbers).
        reference: override the reference (tests); default see ml/monitoring/reference.py.
        reports: write the Evidently reports (the slowest part).

    Raises:
        DataError / RegistryError: no model, no marts, or no features in the current frame.
    """
    started = time.perf_counter()
    scorer, version = _load_model(settings, model_version)
    if current is None:
        current = load_current(settings)
    if current.empty:
        raise DataError(f"nothing to monitor on {run_date}: the current frame has no rows")
    reference = reference or load_reference(settings, scorer, version, run_date)
    features, categorical = list(scorer.feature_names), list(scorer.categorical_features)
    run_id = f"{run_date:%Y%m%d}-v{version}"

    populations = drift.population_drift(
        reference.features,
        current,
        features,
        categorical,
        drift.DriftThresholds.from_settings(settings),
    )
    drift_frame = populations.frame
    if "probability" in current.columns:
        current_scores = current["probability"].to_numpy(float)
    else:
        current_scores = scorer.predict_proba(current)
    pred_rows = prediction_drift(reference.scores, current_scores, settings)
    perf, business, note = matured_performance(settings, run_date)
    serving = service_health(settings, run_date)

    report = MonitoringReport(
        run_date=run_date,
        run_id=run_id,
        model_version=version,
        reference_source=reference.source,
        reference_description=reference.description,
        reference_rows=len(reference.features),
        current_rows=len(current),
        data_drift=drift_frame,
        prediction_drift=pred_rows,
        performance=perf,
        business=business,
        serving=serving,
        performance_note=note,
        drift_populations=populations.populations,
    )
    if reports:
        from ml.monitoring.reports import evidently_reports, log_to_champion_run

        report.report_paths = evidently_reports(
            settings,
            run_date=run_date,
            version=version,
            reference=reference.features,
            current=current,
            reference_scores=reference.scores,
            current_scores=current_scores,
            features=features,
            categorical=categorical,
            reference_description=reference.description,
            population_drift=populations,
        )
        report.mlflow_run_id = log_to_champion_run(settings, version, report.report_paths, run_date)
    # one transaction: a run killed here leaves the date's previous figures whole
    record_run(
        settings,
        {
            "data_drift": _data_drift_rows(drift_frame, populations.populations, settings),
            "prediction_drift": pred_rows,
            "performance": perf,
            "business": business,
            "serving": serving,
        },
        run_date=run_date,
        run_id=run_id,
        model_version=version,
    )
    report.seconds = time.perf_counter() - started
    log.info(
        "monitoring %s: %s; prediction PSI %.3f, %s (%.1f s)",
        run_id,
        report.drift_verdict,
        report.prediction_psi,
        note,
        report.seconds,
    )
    return report


def send_alerts(settings: Settings, report: MonitoringReport) -> list:
    """Raise the alerts the report calls for (see ml/alerts/rules.py) and deliver them;
    returns one `AlertResult` per alert and channel. Never raises for a channel's failure."""
    from ml.alerts.channels import dispatch
    from ml.alerts.rules import report_alerts

    return dispatch(settings, report_alerts(settings, report))
