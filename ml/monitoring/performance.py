"""Performance on matured labels and business metrics, per scoring cohort.

A cohort is the set of leads scored on one `scoring_date` (the CRM's `lead_score_history`).
Its label for a lead: converted within `features.label_window_days` after it was scored
(scored_at < converted_at ≤ scored_at + W). A cohort is *matured* on `run_date` when
scoring_date + W + 1 day ≤ run_date (every label window of the day has closed); only matured
cohorts are measured. Each run measures the cohorts that matured in the last W days, so every
cohort is measured a few times as late conversions land, and the store keeps the series.

Outcomes (created_at, converted_at per lead) come from the `lead_conversions` mart
(`<marts_dir>/lead_conversions.parquet`: lead_id, created_at, converted_at) when it exists; until
then, as a stop-gap, from the landing zone's leads.csv and conversions.csv read with DuckDB
(read-only, text columns typed as in staging; rows that do not parse are ignored).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml.config import Settings
from ml.evaluate import calibration_table, top_k

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")
CONVERSIONS_MART = "lead_conversions.parquet"


def matured_window(settings: Settings, run_date: date) -> tuple[date, date]:
    """First and last scoring date of the cohorts measured on `run_date` (inclusive)."""
    window = settings.features.label_window_days
    last = run_date - timedelta(days=window + 1)
    return last - timedelta(days=window - 1), last


def read_cohorts(settings: Settings, first: date, last: date) -> pd.DataFrame:
    """Scores of the cohorts scored in [first, last] from the CRM database (read-only); empty
    when there is no CRM database yet."""
    import sqlalchemy as sa

    from ml import crm

    columns = ["scoring_date", "lead_id", "probability", "tier", "model_version", "scored_at"]
    empty = pd.DataFrame(columns=columns)
    url = settings.paths.crm_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return empty
    engine = crm.crm_engine(settings, read_only=True)
    try:
        if not sa.inspect(engine).has_table("lead_score_history"):
            return empty
        h = crm.lead_score_history
        query = sa.select(*(h.c[c] for c in columns)).where(
            h.c.scoring_date >= first, h.c.scoring_date <= last
        )
        with engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    finally:
        engine.dispose()
    if frame.empty:
        return empty
    frame["scoring_date"] = pd.to_datetime(frame["scoring_date"]).dt.date
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    return frame


def read_outcomes(settings: Settings, lead_ids: pd.Series) -> tuple[pd.DataFrame, str]:
    """created_at and converted_at (UTC, NaT if not converted) of the given leads, and the
    source used (mart or raw stop-gap)."""
    ids = pd.Series(pd.unique(lead_ids.astype(str)), name="lead_id")
    mart = settings.paths.marts_dir / CONVERSIONS_MART
    if mart.is_file():
        frame = pd.read_parquet(mart, columns=["lead_id", "created_at", "converted_at"])
        source = str(mart)
    else:
        import duckdb

        raw = settings.paths.raw_dir
        leads, conversions = raw / "leads.csv", raw / "conversions.csv"
        if not leads.is_file():
            return pd.DataFrame(columns=["lead_id", "created_at", "converted_at"]), "none"
        conv_sql = (
            f"select lead_id, min(try_cast(converted_at as timestamptz)) as converted_at "
            f"from read_csv('{conversions}', all_varchar = true, header = true) group by lead_id"
            if conversions.is_file()
            else "select null::varchar as lead_id, null::timestamptz as converted_at where false"
        )
        con = duckdb.connect()
        try:
            con.execute("set timezone = 'UTC'")
            con.register("wanted", ids.to_frame())
            frame = con.execute(
                f"""
                with leads as (
                    select lead_id, try_cast(created_at as timestamptz) as created_at
                    from read_csv('{leads}', all_varchar = true, header = true)
                ), conversions as ({conv_sql})
                select w.lead_id, l.created_at, c.converted_at
                from wanted w
                left join leads l using (lead_id)
                left join conversions c using (lead_id)
                """
            ).df()
        finally:
            con.close()
        source = f"stop-gap: {leads.name} + {conversions.name} in {raw}"
    frame = frame[frame["lead_id"].astype(str).isin(set(ids))].copy()
    frame["lead_id"] = frame["lead_id"].astype(str)
    for col in ("created_at", "converted_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame.drop_duplicates("lead_id"), source


def label_cohorts(scored: pd.DataFrame, outcomes: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Scores with `label` (converted within the window after scoring) and `days_to_close`
    (creation to conversion, for converted leads); leads converted before they were scored
    are dropped."""
    frame = scored.merge(outcomes, on="lead_id", how="left")
    before = frame["converted_at"].notna() & (frame["converted_at"] <= frame["scored_at"])
    frame = frame[~before].copy()
    horizon = frame["scored_at"] + pd.Timedelta(days=window_days)
    frame["label"] = (frame["converted_at"].notna() & (frame["converted_at"] <= horizon)).astype(
        int
    )
    frame["days_to_close"] = np.where(
        frame["label"] == 1,
        (frame["converted_at"] - frame["created_at"]).dt.total_seconds() / 86400.0,
        np.nan,
    )
    return frame


def _row(
    cohort: str,
    version: str,
    metric: str,
    value: float,
    status: str = "info",
    threshold: float | None = None,
    feature: str | None = None,
) -> dict:
    return {
        "cohort": cohort,
        "model_version": version,
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "status": status,
        "feature": feature,
    }


def cohort_metrics(labelled: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Performance rows (auc, pr_auc, precision_at_k, brier, ece, n, positives, base_rate) and
    business rows (per tier: share, conversion_rate, lift_vs_base, median days_to_close; and
    lift_a_over_base) per (cohort, model_version), in the store's row shape."""
    perf, business = [], []
    auc_threshold = settings.monitoring.auc_threshold
    for (cohort_date, version), group in labelled.groupby(["scoring_date", "model_version"]):
        cohort, version = str(cohort_date), str(version)
        y = group["label"].to_numpy(int)
        p = group["probability"].to_numpy(float)
        n, positives = len(y), int(y.sum())
        base = positives / n if n else float("nan")
        perf += [
            _row(cohort, version, "n", n),
            _row(cohort, version, "positives", positives),
            _row(cohort, version, "base_rate", base),
        ]
        if 0 < positives < n:
            auc = float(roc_auc_score(y, p))
            k = max(1, int(np.ceil(settings.evaluation.top_k_fraction * n)))
            calibration = calibration_table(y, p, settings.evaluation.calibration_bins)
            ece = (
                sum(b["n"] * abs(b["mean_predicted"] - b["observed_rate"]) for b in calibration) / n
            )
            perf += [
                _row(
                    cohort,
                    version,
                    "auc",
                    auc,
                    "breach" if auc < auc_threshold else "ok",
                    auc_threshold,
                ),
                _row(cohort, version, "pr_auc", float(average_precision_score(y, p))),
                _row(cohort, version, "precision_at_k", top_k(y, p, k)[0]),
                _row(cohort, version, "brier", float(brier_score_loss(y, p))),
                _row(cohort, version, "ece", float(ece)),
                _row(cohort, version, "mean_predicted", float(p.mean())),
            ]
        else:
            perf.append(_row(cohort, version, "auc", float("nan"), "insufficient", auc_threshold))
        tiers = group.groupby("tier")
        for tier in TIERS:
            if tier not in tiers.groups:
                business.append(_row(cohort, version, "share", 0.0, feature=tier))
                continue
            t = tiers.get_group(tier)
            rate = float(t["label"].mean())
            business += [
                _row(cohort, version, "share", len(t) / n, feature=tier),
                _row(cohort, version, "conversion_rate", rate, feature=tier),
                _row(
                    cohort,
                    version,
                    "lift_vs_base",
                    rate / base if base else float("nan"),
                    feature=tier,
                ),
                _row(
                    cohort,
                    version,
                    "median_days_to_close",
                    float(t["days_to_close"].median()) if t["label"].any() else float("nan"),
                    feature=tier,
                ),
            ]
        a = group[group["tier"] == "A"]
        business += [
            _row(cohort, version, "base_rate", base),
            _row(
                cohort,
                version,
                "lift_a_over_base",
                float(a["label"].mean()) / base if len(a) and base else float("nan"),
            ),
        ]
    columns = ["cohort", "model_version", "feature", "metric", "value", "threshold", "status"]
    return pd.DataFrame(perf, columns=columns), pd.DataFrame(business, columns=columns)


def matured_performance(
    settings: Settings, run_date: date
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Performance and business rows of the cohorts matured in the last label window, and a
    note on the data used."""
    first, last = matured_window(settings, run_date)
    scored = read_cohorts(settings, first, last)
    if scored.empty:
        note = f"no scoring cohort in {first}..{last} (matured by {run_date}) in the CRM database"
        empty = pd.DataFrame(
            columns=["cohort", "model_version", "feature", "metric", "value", "threshold", "status"]
        )
        return empty, empty.copy(), note
    outcomes, source = read_outcomes(settings, scored["lead_id"])
    labelled = label_cohorts(scored, outcomes, settings.features.label_window_days)
    perf, business = cohort_metrics(labelled, settings)
    note = (
        f"{labelled['scoring_date'].nunique()} matured cohort(s) {first}..{last}, "
        f"{len(labelled):,} scored leads; outcomes from {source}"
    )
    return perf, business, note
