"""The monitoring store: every monitoring figure as a row the sensors, CLI and dashboard read.

`monitoring_metrics` (run_date, run_id, model_version, scope, feature, cohort, metric, value,
threshold, status, recorded_at) holds the figures; scopes: data_drift (metric psi, ks_pvalue,
chi2_pvalue per feature), prediction_drift (psi, ks_pvalue on the score; tier shares), performance
(auc, pr_auc, precision_at_k, brier, ece, n, positives per matured cohort), business (conversion
rate, lift, lead-to-close days and share per tier per cohort), serving (latency_p99_ms,
error_rate, written by the prediction-log writer). `alert_log` keeps every alert delivery. Both
live in an SQLite file of its own by default (WAL mode, so readers never block the writer) or in
PostgreSQL (`paths.monitoring_url`; engines from ml/stores.py). Re-recording the same
(run_id, scope) replaces it; a monitoring run records all its scopes in one transaction
(`record_run`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa

from ml import stores
from ml.config import Settings

metadata = sa.MetaData()
monitoring_metrics = sa.Table(
    "monitoring_metrics",
    metadata,
    sa.Column("run_date", sa.Date, nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column(
        "scope", sa.String(32), nullable=False
    ),  # data_drift | prediction_drift | performance | business
    sa.Column("feature", sa.String(128), nullable=True),
    sa.Column("cohort", sa.String(32), nullable=True),  # scoring date of a matured cohort
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # ok | warning | drift | breach | info
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

# One row per alert per channel (delivered, failed, suppressed or skipped): the alert history
# the dashboard shows and the memory of the alerts' cool-down (ml/alerts/channels.py).
alert_log = sa.Table(
    "alert_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_key", sa.String(255), nullable=False, index=True),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # sent | failed | suppressed | skipped
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("sent_at", sa.DateTime, nullable=False, index=True),  # UTC
)

COLUMNS = [c.name for c in monitoring_metrics.columns]


def engine_for(url: str) -> sa.Engine:
    """The engine of a store URL: ml/stores.py's (kept for callers that still import it here)."""
    return stores.engine(url)


def monitoring_engine(settings: Settings) -> sa.Engine:
    """The engine of the monitoring store (`settings.paths.monitoring_url`), tables created."""
    engine = stores.engine(settings.paths.monitoring_url)
    metadata.create_all(engine, checkfirst=True)
    return engine


def _text(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _records(
    rows: pd.DataFrame, *, run_date: date, run_id: str, scope: str, model_version: str | None,
    now: datetime,
) -> list[dict]:
    return [
        {
            "run_date": run_date,
            "run_id": run_id,
            "model_version": _text(row.get("model_version")) or model_version,
            "scope": scope,
            "feature": _text(row.get("feature")),
            "cohort": _text(row.get("cohort")),
            "metric": row["metric"],
            "value": None if pd.isna(row.get("value")) else float(row["value"]),
            "threshold": None if pd.isna(row.get("threshold")) else float(row["threshold"]),
            "status": row["status"],
            "recorded_at": now,
        }
        for row in rows.to_dict("records")
    ]


def _replace_scope(conn: sa.Connection, run_id: str, scope: str, records: list[dict]) -> None:
    """Within the caller's transaction: the (run_id, scope) figures become `records`."""
    conn.execute(
        monitoring_metrics.delete().where(
            (monitoring_metrics.c.run_id == run_id) & (monitoring_metrics.c.scope == scope)
        )
    )
    if records:
        conn.execute(monitoring_metrics.insert(), records)


def record_run(
    settings: Settings,
    scopes: dict[str, pd.DataFrame],
    *,
    run_date: date,
    run_id: str,
    model_version: str | None,
) -> dict[str, int]:
    """Replace the figures of every scope in `scopes` for `run_id` in ONE transaction, so a run
    killed while recording leaves the previous figures of that run whole (never some scopes
    old and some new). Rows as in `record_metrics`. Returns the rows written per scope."""
    now = datetime.now(UTC).replace(tzinfo=None)
    records = {
        scope: _records(rows, run_date=run_date, run_id=run_id, scope=scope,
                        model_version=model_version, now=now)
        for scope, rows in scopes.items()
    }
    engine = monitoring_engine(settings)
    with engine.begin() as conn:
        for scope, rows in records.items():
            _replace_scope(conn, run_id, scope, rows)
    return {scope: len(rows) for scope, rows in records.items()}


def record_metrics(
    settings: Settings,
    rows: pd.DataFrame,
    *,
    run_date: date,
    run_id: str,
    scope: str,
    model_version: str | None,
) -> int:
    """Replace the (run_id, scope) figures with `rows` (columns metric, value, status and
    optionally feature, cohort, threshold, and model_version where a row's figure belongs to
    another version than the run's, e.g. a matured cohort scored by an earlier champion).
    Returns the number of rows written."""
    written = record_run(
        settings, {scope: rows}, run_date=run_date, run_id=run_id, model_version=model_version
    )
    return written[scope]


def read_metrics(settings: Settings, scope: str | None = None) -> pd.DataFrame:
    """All recorded figures (optionally of one scope), oldest first."""
    engine = monitoring_engine(settings)
    query = sa.select(monitoring_metrics)
    if scope:
        query = query.where(monitoring_metrics.c.scope == scope)
    with engine.connect() as conn:
        frame = pd.read_sql(query.order_by(monitoring_metrics.c.recorded_at), conn)
    return frame if not frame.empty else pd.DataFrame(columns=COLUMNS)
