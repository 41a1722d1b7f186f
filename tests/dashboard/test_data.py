"""The dashboard's reads cannot write and leave no lock or snapshot behind for a writer."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.pages.online import full_log


def _crm_file(settings: Settings) -> str:
    return str(data.sqlite_path(settings.paths.crm_url))


def test_read_only_engine_refuses_writes(filled: Settings) -> None:
    engine = data.read_only_engine(filled.paths.crm_url)
    with pytest.raises(sa.exc.OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(sa.text("delete from lead_score_history"))
    engine.dispose()


def test_reads_succeed_while_a_writer_holds_the_write_lock(filled: Settings) -> None:
    writer = sqlite3.connect(_crm_file(filled), isolation_level=None, timeout=0)
    writer.execute("begin immediate")
    writer.execute("update lead_score_history set score = score")
    try:
        assert len(data.current_scores(filled)) > 0
        assert not data.tier_mix_over_time(filled).empty
    finally:
        writer.execute("rollback")
        writer.close()


def test_no_connection_outlives_a_read(filled: Settings) -> None:
    """After every read the writer gets its lock at once and can checkpoint the whole WAL
    (a reader still holding a snapshot would make the checkpoint report busy)."""
    data.current_scores(filled)
    data.lead_history(filled, "L0000001")
    data.scoring_runs(filled)
    data.metrics(filled)
    data.open_alerts(filled)
    full_log(filled)
    for url in (
        filled.paths.crm_url,
        filled.paths.monitoring_url,
        filled.serving.prediction_log_url,
    ):
        writer = sqlite3.connect(str(data.sqlite_path(url)), isolation_level=None, timeout=0)
        try:
            writer.execute("begin immediate")
            writer.execute("rollback")
            busy, _, _ = writer.execute("pragma wal_checkpoint(truncate)").fetchone()
            assert busy == 0, url
        finally:
            writer.close()


def test_latest_per_cohort_keeps_the_last_measurement() -> None:
    import pandas as pd

    rows = pd.DataFrame(
        {
            "cohort": ["2026-08-01"] * 2,
            "model_version": ["1", "1"],
            "feature": [None, None],
            "metric": ["auc", "auc"],
            "value": [0.80, 0.81],
            "recorded_at": pd.to_datetime(["2026-10-01", "2026-10-08"]),
        }
    )
    assert data.latest_per_cohort(rows)["value"].tolist() == [0.81]


def test_read_sql_on_each_store_reads_rows_and_an_absent_table_as_empty(store_url):
    url = store_url("dashboard")
    assert data.read_sql(url, "select * from lead_scores").empty  # no store, or no table yet
    from ml import stores

    with stores.engine(url).begin() as conn:
        conn.execute(sa.text("create table scores (lead_id varchar(10), score float)"))
        conn.execute(sa.text("insert into scores values ('L1', 42.5)"))
    assert data.read_sql(url, "select * from lead_scores").empty
    rows = data.read_sql(url, "select lead_id, score from scores")
    assert rows.to_dict("records") == [{"lead_id": "L1", "score": 42.5}]
    engine = data.read_only_engine(url)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:  # it cannot write
        conn.execute(sa.text("insert into scores values ('L2', 1.0)"))
