"""The monitoring store on SQLite and on PostgreSQL (same assertions; the `store_url` fixture):
re-recording a (run_id, scope) replaces exactly those figures, in one transaction; missing
values are NULLs; an empty store reads as an empty frame with the columns."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ml import stores
from ml.config import Settings, load_settings
from ml.monitoring import store

D1, D2 = date(2026, 11, 1), date(2026, 11, 2)
ALERT = {"alert_key": "psi:a", "rule": "psi", "severity": "warning", "status": "sent"}


@pytest.fixture
def settings(tmp_path: Path, store_url: Callable[[str], str]) -> Settings:
    return load_settings(
        overrides={
            "paths.data_dir": str(tmp_path),
            "paths.monitoring_url": store_url("monitoring"),
        }
    )


def _drift(psi: dict[str, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": list(psi),
            "metric": "psi",
            "value": list(psi.values()),
            "threshold": 0.2,
            "status": ["drift" if (v or 0) > 0.2 else "ok" for v in psi.values()],
        }
    )


def test_empty_store_reads_as_empty_frame_with_columns(settings: Settings) -> None:
    frame = store.read_metrics(settings)
    assert frame.empty
    assert list(frame.columns) == store.COLUMNS


def test_rerecording_a_run_scope_replaces_only_it(settings: Settings) -> None:
    kw = {"run_date": D1, "model_version": "3"}
    first = _drift({"a": 0.1, "b": 0.3})
    assert store.record_metrics(settings, first, run_id="r1", scope="data_drift", **kw) == 2
    perf = pd.DataFrame({"metric": ["auc"], "value": [0.81], "status": ["ok"], "cohort": [D1]})
    store.record_metrics(settings, perf, run_id="r1", scope="performance", **kw)
    store.record_metrics(settings, _drift({"a": 0.05}), run_id="r0", scope="data_drift", **kw)
    # The same (run, scope) again: its two rows become three, the others stay.
    again = _drift({"a": 0.4, "b": None, "c": 0.0})
    store.record_metrics(
        settings, again, run_id="r1", scope="data_drift", run_date=D2, model_version="4"
    )

    drift = store.read_metrics(settings, "data_drift")
    r1 = drift[drift["run_id"] == "r1"].set_index("feature")
    assert sorted(r1.index) == ["a", "b", "c"]
    assert r1.loc["a", "value"] == pytest.approx(0.4) and r1.loc["a", "status"] == "drift"
    assert r1.loc["b", "value"] is None or math.isnan(r1.loc["b", "value"])  # NULL, not 0
    assert set(r1["model_version"]) == {"4"}
    assert set(pd.to_datetime(r1["run_date"]).dt.date) == {D2}
    assert drift[drift["run_id"] == "r0"]["value"].tolist() == [pytest.approx(0.05)]
    perf_back = store.read_metrics(settings, "performance")
    assert perf_back[["metric", "cohort", "model_version"]].values.tolist() == [
        ["auc", D1.isoformat(), "3"]
    ]
    assert len(store.read_metrics(settings)) == 5


def test_a_failed_rerecord_leaves_the_previous_figures(settings: Settings) -> None:
    kw = {"run_id": "r1", "scope": "data_drift", "run_date": D1, "model_version": "3"}
    store.record_metrics(settings, _drift({"a": 0.1, "b": 0.3}), **kw)
    bad = _drift({"a": 0.5})
    bad["status"] = None  # NOT NULL column: the insert fails after the delete ran
    with pytest.raises(sa.exc.IntegrityError):
        store.record_metrics(settings, bad, **kw)
    kept = store.read_metrics(settings, "data_drift").sort_values("feature")
    assert kept["feature"].tolist() == ["a", "b"]
    assert kept["value"].tolist() == [pytest.approx(0.1), pytest.approx(0.3)]


def test_alert_log_round_trips(settings: Settings) -> None:
    engine = store.monitoring_engine(settings)
    sent = datetime(2026, 11, 2, 6, 30, tzinfo=UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            store.alert_log.insert(),
            [
                {
                    **ALERT,
                    "attempts": 1,
                    "error": None,
                    "title": "drift",
                    "channel": c,
                    "sent_at": sent,
                }
                for c in ("slack", "email")
            ],
        )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(store.alert_log).order_by(store.alert_log.c.id)).all()
    assert [(r.channel, r.sent_at) for r in rows] == [("slack", sent), ("email", sent)]
    assert rows[0].id < rows[1].id


def test_engine_is_shared_per_url(settings: Settings) -> None:
    url = settings.paths.monitoring_url
    assert store.monitoring_engine(settings) is stores.engine(url)
    assert stores.engine(url, read_only=True) is not stores.engine(url)
