"""Read-only data access for the dashboard: plain functions, no Streamlit, testable alone.

Every SQLite store is opened with a `mode=ro` URI and a connection that is closed after the
query (NullPool), so the dashboard never holds a lock a nightly writer needs; a store that does
not exist yet reads as empty instead of being created. The DuckDB warehouse is never opened.
The registry is read through MLflow's client (its own store, short reads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ml import stores
from ml.config import Settings

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D")


# ---------------------------------------------------------------- engines


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL, None for other databases."""
    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    return Path(parsed.database or "")


def read_only_engine(url: str) -> sa.Engine | None:
    """An engine that cannot write: SQLite opened `mode=ro` (None if the file does not exist);
    PostgreSQL from ml/stores.py with READ ONLY transactions (grant the dashboard a read-only
    role there too)."""
    path = sqlite_path(url)
    if path is None:
        return stores.engine(url, read_only=True)
    if not path.is_file():
        return None
    engine = sa.create_engine(
        f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool, connect_args={"timeout": 5}
    )

    @sa.event.listens_for(engine, "connect")
    def _busy(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("pragma busy_timeout=5000")

    return engine


def read_sql(url: str, query: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run one read query on a store; an absent store or table reads as an empty frame."""
    engine = read_only_engine(url)
    if engine is None:
        return pd.DataFrame()
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(query) if isinstance(query, str) else query, params or {})
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    # no such table (store not initialised yet): OperationalError on SQLite, ProgrammingError
    # (UndefinedTable) on PostgreSQL
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        log.info("reading %s: %s", url, exc.orig)
        return pd.DataFrame()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- monitoring store


def metrics(settings: Settings, scope: str | None = None) -> pd.DataFrame:
    """monitoring_metrics rows (optionally of one scope), oldest first; run_date as date."""
    from ml.monitoring.store import COLUMNS, monitoring_metrics

    query = sa.select(monitoring_metrics).order_by(monitoring_metrics.c.recorded_at)
    if scope:
        query = query.where(monitoring_metrics.c.scope == scope)
    frame = read_sql(settings.paths.monitoring_url, query)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    frame["run_date"] = pd.to_datetime(frame["run_date"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def latest_per_cohort(rows: pd.DataFrame) -> pd.DataFrame:
    """The last recorded figure per (cohort, model_version, feature, metric): every nightly run
    re-measures the matured cohorts of its label window, the latest measurement counts."""
    if rows.empty:
        return rows
    keys = ["cohort", "model_version", "feature", "metric"]
    out = rows.sort_values("recorded_at").copy()
    out["feature"] = out["feature"].fillna("")
    out = out.drop_duplicates(keys, keep="last")
    out["cohort"] = pd.to_datetime(out["cohort"])
    return out.sort_values(["cohort", "metric", "feature"]).reset_index(drop=True)


def alerts(settings: Settings) -> pd.DataFrame:
    """alert_log rows, newest first."""
    from ml.monitoring.store import alert_log

    frame = read_sql(
        settings.paths.monitoring_url, sa.select(alert_log).order_by(alert_log.c.id.desc())
    )
    if not frame.empty:
        frame["sent_at"] = pd.to_datetime(frame["sent_at"])
    return frame


def open_alerts(settings: Settings, now: datetime | None = None) -> pd.DataFrame:
    """Alerts still in their cool-down (alerting.cooldown_minutes): one row per alert (not per
    channel) with rule, severity, title, first delivery time and channel statuses."""
    log_rows = alerts(settings)
    columns = ["alert_key", "rule", "severity", "title", "sent_at", "channels"]
    if log_rows.empty:
        return pd.DataFrame(columns=columns)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    since = now - timedelta(minutes=settings.alerting.cooldown_minutes)
    recent = log_rows[(log_rows["sent_at"] >= since) & (log_rows["status"] != "suppressed")]
    if recent.empty:
        return pd.DataFrame(columns=columns)
    grouped = recent.groupby("alert_key", sort=False)
    out = grouped.agg(
        rule=("rule", "first"),
        severity=("severity", "first"),
        title=("title", "first"),
        sent_at=("sent_at", "min"),
    )
    out["channels"] = grouped.apply(
        lambda g: ", ".join(f"{c}: {s}" for c, s in zip(g["channel"], g["status"], strict=True)),
        include_groups=False,
    )
    return out.reset_index()[columns].sort_values("sent_at", ascending=False)


def evidently_reports(settings: Settings) -> pd.DataFrame:
    """The Evidently HTML reports on disk: run_date, name, path (newest run first)."""
    root = settings.paths.reports_dir / "monitoring"
    rows = [
        {"run_date": p.parent.name, "name": p.stem, "path": p}
        for p in sorted(root.glob("*/*.html"))
    ]
    frame = pd.DataFrame(rows, columns=["run_date", "name", "path"])
    return frame.sort_values(["run_date", "name"], ascending=[False, True]).reset_index(drop=True)


# ---------------------------------------------------------------- CRM database


def scoring_runs(settings: Settings) -> pd.DataFrame:
    """scoring_runs, newest first."""
    from ml.crm import scoring_runs as table

    return read_sql(settings.paths.crm_url, sa.select(table).order_by(table.c.id.desc()))


def current_scores(settings: Settings) -> pd.DataFrame:
    """lead_id, score, tier, probability, scoring_date, model_version of the latest run."""
    from ml.crm import lead_scores as t

    query = sa.select(
        t.c.lead_id, t.c.score, t.c.tier, t.c.probability, t.c.scoring_date, t.c.model_version
    )
    return read_sql(settings.paths.crm_url, query)


def tier_mix_over_time(settings: Settings) -> pd.DataFrame:
    """Per scoring date and tier: leads, share of the date's leads and mean score."""
    from ml.crm import lead_score_history as h

    query = sa.select(
        h.c.scoring_date,
        h.c.tier,
        sa.func.count().label("leads"),
        sa.func.avg(h.c.score).label("mean_score"),
    ).group_by(h.c.scoring_date, h.c.tier)
    frame = read_sql(settings.paths.crm_url, query)
    if frame.empty:
        return pd.DataFrame(columns=["scoring_date", "tier", "leads", "mean_score", "share"])
    frame["scoring_date"] = pd.to_datetime(frame["scoring_date"])
    frame["share"] = frame["leads"] / frame.groupby("scoring_date")["leads"].transform("sum")
    return frame.sort_values(["scoring_date", "tier"]).reset_index(drop=True)


def lead_history(settings: Settings, lead_id: str) -> pd.DataFrame:
    """Every scoring of one lead, oldest first (with reasons decoded to lists)."""
    import json

    from ml.crm import lead_score_history as h

    query = sa.select(h).where(h.c.lead_id == lead_id.strip()).order_by(h.c.scoring_date)
    frame = read_sql(settings.paths.crm_url, query)
    for col in ("reasons_for", "reasons_against"):
        if col in frame:
            frame[col] = frame[col].map(lambda v: json.loads(v) if v else [])
    return frame


# ---------------------------------------------------------------- registry


@dataclass
class ModelCard:
    """What the Overview shows about one aliased model version."""

    alias: str
    version: int
    created: datetime | None
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def test_auc(self) -> float | None:
        """The backtest's mean AUC (older versions: their single test window's)."""
        return self.metrics.get("backtest_auc_mean", self.metrics.get("test_auc"))

    @property
    def trained_on(self) -> str:
        t = self.tags
        rows = t.get("training_rows")
        first, last = (
            t.get("training_snapshot_min", "")[:10],
            t.get("training_snapshot_max", "")[:10],
        )
        span = f"snapshots {first} → {last}" if first else "snapshot range not recorded"
        return f"{int(rows):,} rows, {span}" if rows else span

    @property
    def test_window(self) -> str:
        start, end = self.tags.get("test_window_start"), self.tags.get("test_window_end")
        return f"{start} → {end}" if start else "not recorded"


def registry_exists(settings: Settings) -> bool:
    path = sqlite_path(settings.paths.mlflow_tracking_uri)
    return path is None or path.is_file()


def model_cards(settings: Settings) -> list[ModelCard]:
    """@champion and @challenger (those that exist). Empty when there is no registry yet: the
    dashboard does not create an MLflow store by looking at it."""
    if not registry_exists(settings):
        return []
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml.registry import CHALLENGER, CHAMPION

    uri = settings.paths.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    cards = []
    for alias in (CHAMPION, CHALLENGER):
        try:
            mv = client.get_model_version_by_alias(settings.registry.model_name, alias)
        except MlflowException:
            continue
        run_metrics: dict[str, float] = {}
        tags = dict(mv.tags or {})
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                run_metrics = dict(run.data.metrics)
                tags = {**run.data.tags, **tags}
            except MlflowException:
                log.warning("run %s of v%s is gone", mv.run_id, mv.version)
        created = (
            datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
            if mv.creation_timestamp
            else None
        )
        cards.append(ModelCard(alias, int(mv.version), created, mv.run_id, run_metrics, tags))
    return cards


def backtest_table(settings: Settings, alias: str = "champion") -> pd.DataFrame:
    """The per-fold backtest figures logged with the aliased version (empty if none): one row
    per (origin, family, model)."""
    if not registry_exists(settings):
        return pd.DataFrame()
    import tempfile

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = settings.paths.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = client.get_model_version_by_alias(settings.registry.model_name, alias)
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(mv.run_id, "backtest.csv", tmp)
            return pd.read_csv(path)
    except (MlflowException, OSError) as exc:
        log.info("no backtest table for @%s: %s", alias, type(exc).__name__)
        return pd.DataFrame()


def model_card_text(settings: Settings, run_id: str) -> str | None:
    """The Markdown model card logged on a version's run (`ml/model_card.py`), None if none."""
    if not registry_exists(settings):
        return None
    from ml.model_card import read_logged_card

    return read_logged_card(settings, run_id)


def alias_moves(settings: Settings) -> pd.DataFrame:
    """The alias history (promotions, rollbacks, new challengers), newest first."""
    from ml.registry import alias_history_table, alias_history_url

    t = alias_history_table
    return read_sql(alias_history_url(settings), sa.select(t).order_by(t.c.id.desc()))


# ---------------------------------------------------------------- prediction log


def prediction_log(settings: Settings, hours: float | None = 24.0) -> pd.DataFrame:
    """Prediction-log rows of the last `hours` before the newest row (all if None)."""
    from ml.serving.prediction_log import prediction_log as t

    cols = [
        t.c.logged_at,
        t.c.lead_id,
        t.c.request_id,
        t.c.endpoint,
        t.c.mode,
        t.c.variant,
        t.c.served,
        t.c.model_version,
        t.c.probability,
        t.c.score,
        t.c.tier,
        t.c.latency_ms,
        t.c.status,
    ]
    query = sa.select(*cols)
    url = settings.serving.prediction_log_url
    if hours is not None:
        newest = read_sql(url, sa.select(sa.func.max(t.c.logged_at).label("newest")))
        if newest.empty or newest.iloc[0, 0] is None:
            return pd.DataFrame(columns=[c.name for c in cols])
        since = pd.Timestamp(newest.iloc[0, 0]) - pd.Timedelta(hours=hours)
        query = query.where(t.c.logged_at >= since.to_pydatetime())
    frame = read_sql(url, query.order_by(t.c.id))
    if frame.empty:
        return pd.DataFrame(columns=[c.name for c in cols])
    frame["logged_at"] = pd.to_datetime(frame["logged_at"])
    frame["served"] = frame["served"].astype(bool)
    return frame


def serving_summary(log_rows: pd.DataFrame) -> dict[str, float | int]:
    """Requests, error rate and latency percentiles of the served predictions."""
    served = log_rows[log_rows["served"]]
    if served.empty:
        return {"requests": 0}
    minutes = max((served["logged_at"].max() - served["logged_at"].min()).total_seconds() / 60, 1)
    p50, p95, p99 = np.percentile(served["latency_ms"].astype(float), [50, 95, 99])
    return {
        "requests": int(len(served)),
        "requests_per_minute": float(len(served) / minutes),
        "error_rate": float((served["status"] != "ok").mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
    }


def serving_series(log_rows: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Per time bucket of served predictions: requests, errors, error_rate, p50/p95/p99 ms."""
    served = log_rows[log_rows["served"]]
    columns = ["time", "requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms"]
    if served.empty:
        return pd.DataFrame(columns=columns)
    grouped = served.groupby(pd.Grouper(key="logged_at", freq=freq))
    out = pd.DataFrame(
        {
            "requests": grouped.size(),
            "errors": grouped["status"].apply(lambda s: int((s != "ok").sum())),
            "p50_ms": grouped["latency_ms"].quantile(0.50),
            "p95_ms": grouped["latency_ms"].quantile(0.95),
            "p99_ms": grouped["latency_ms"].quantile(0.99),
        }
    )
    out = out[out["requests"] > 0]
    out["error_rate"] = out["errors"] / out["requests"]
    return out.reset_index(names="time")[columns]


def variant_summary(log_rows: pd.DataFrame) -> pd.DataFrame:
    """Per mode, variant and served flag: predictions, leads, versions, error rate, p95 ms and
    mean score (shadow rows are the challenger's scores that were never returned)."""
    columns = [
        "mode",
        "variant",
        "served",
        "predictions",
        "leads",
        "versions",
        "error_rate",
        "p95_ms",
        "mean_score",
    ]
    if log_rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = log_rows.groupby(["mode", "variant", "served"])
    out = grouped.agg(
        predictions=("lead_id", "size"),
        leads=("lead_id", "nunique"),
        versions=("model_version", lambda v: ", ".join(sorted(set(map(str, v))))),
        error_rate=("status", lambda s: float((s != "ok").mean())),
        p95_ms=("latency_ms", lambda s: float(np.percentile(s, 95))),
        mean_score=("score", "mean"),
    )
    return out.reset_index()[columns]


def ab_report(settings: Settings, log_rows: pd.DataFrame) -> Any | None:
    """The A/B report (ml.serving.ab_report) over the log and the landing zone's conversions;
    None when either is missing."""
    from ml.errors import DataError
    from ml.serving.ab_report import ab_report as build
    from ml.serving.ab_report import load_conversions

    if log_rows.empty:
        return None
    try:
        conversions = load_conversions(settings)
    except DataError as exc:
        log.info("no A/B report: %s", exc)
        return None
    return build(settings, log_rows, conversions)


def live_service_models(settings: Settings, timeout: float = 0.5) -> dict[str, Any] | None:
    """The running service's GET /model (models in use, canary state); None if not reachable."""
    import httpx

    url = f"http://{settings.serving.host}:{settings.serving.port}/model"
    try:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError):
        return None
