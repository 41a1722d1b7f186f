"""Retraining sensors through `build_sensor_context`: each fires once per condition that should
start one retrain (champion version + breach episode; new labels per threshold of new leads)
over a sequence of monitoring states, carrying the cursor from tick to tick as Dagster does."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

from ml.monitoring.store import record_metrics
from ml.monitoring.triggers import ChampionInfo
from orchestration import sensors as sensor_module
from orchestration.resources import SettingsResource


class Champion:
    """A stand-in for the registry's @champion that a test can replace (a promotion)."""

    def __init__(self) -> None:
        self.info = ChampionInfo(
            version="3", last_training_snapshot=pd.Timestamp("2026-09-01", tz="UTC")
        )


@pytest.fixture()
def sensor_env(tmp_path, monkeypatch):
    """A data dir with an empty monitoring store and a stand-in champion v3."""
    champion = Champion()
    monkeypatch.setattr(sensor_module, "champion_info", lambda settings: champion.info)
    resource = SettingsResource(data_dir=str(tmp_path))
    return resource, resource.load(), champion


class Ticker:
    """Evaluates a sensor like the daemon does: each tick sees the cursor the last one left."""

    def __init__(self, sensor: dg.SensorDefinition, resource: SettingsResource) -> None:
        self.sensor, self.resource, self.cursor = sensor, resource, None
        self.run_keys: list[str] = []

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(cursor=self.cursor, resources={"settings": self.resource})
        result = self.sensor(context)
        if isinstance(result, dg.SensorResult):
            self.cursor = result.cursor
            self.run_keys += [r.run_key for r in result.run_requests]
        return result


def _skipped(result, *words: str) -> bool:
    return isinstance(result, dg.SkipReason) and all(w in result.skip_message for w in words)


def _fired(result) -> bool:
    return isinstance(result, dg.SensorResult) and len(result.run_requests) == 1


# --- data drift -------------------------------------------------------------------------------


def _record_drift(settings, day: date, psi: dict[str, float], version: str = "3") -> None:
    rows = pd.DataFrame(
        [
            {
                "feature": feature,
                "metric": "psi",
                "value": value,
                "threshold": 0.2,
                "status": "drift" if value > 0.2 else "ok",
            }
            for feature, value in psi.items()
        ]
    )
    record_metrics(
        settings,
        rows,
        run_date=day,
        run_id=f"{day:%Y%m%d}-v{version}",
        scope="data_drift",
        model_version=version,
    )


def test_drift_sensor_fires_once_per_champion_and_drift_episode(sensor_env):
    resource, settings, champion = sensor_env
    sensor = Ticker(sensor_module.drift_retrain_sensor, resource)
    assert _skipped(sensor.tick(), "no drift run")

    day = date(2026, 11, 1)
    _record_drift(settings, day, {"lead_source": 0.05, "company_size": 0.01})
    assert _skipped(sensor.tick(), "0.050")

    _record_drift(settings, day + timedelta(1), {"lead_source": 0.35, "company_size": 0.01})
    assert _fired(sensor.tick())

    # the drift persists and spreads to another feature: the same episode, no second retrain
    _record_drift(settings, day + timedelta(2), {"lead_source": 0.36, "company_size": 0.01})
    assert _skipped(sensor.tick(), "already started")
    _record_drift(settings, day + timedelta(3), {"lead_source": 0.40, "company_size": 0.25})
    assert _skipped(sensor.tick(), "already started", "company_size, lead_source")

    # recovery ends the episode; the same feature drifting again is a new one
    _record_drift(settings, day + timedelta(4), {"lead_source": 0.10, "company_size": 0.01})
    assert _skipped(sensor.tick(), "no feature drifted")
    _record_drift(settings, day + timedelta(5), {"lead_source": 0.30, "company_size": 0.01})
    assert _fired(sensor.tick())

    # a new champion starts its own history
    champion.info = ChampionInfo(version="4", last_training_snapshot=None)
    assert _skipped(sensor.tick(), "no drift run recorded yet for champion v4")
    _record_drift(settings, day + timedelta(6), {"lead_source": 0.31}, version="4")
    assert _fired(sensor.tick())
    assert sensor.run_keys == [
        "data-drift:v3:since-2026-11-02",
        "data-drift:v3:since-2026-11-06",
        "data-drift:v4:since-2026-11-07",
    ]


# --- performance on matured labels ------------------------------------------------------------


def _record_cohort(settings, run_day: date, cohort: str, auc: float | None) -> None:
    status = "insufficient" if auc is None else ("breach" if auc < 0.75 else "ok")
    row = {"metric": "auc", "threshold": 0.75, "cohort": cohort, "value": auc, "status": status}
    record_metrics(
        settings,
        pd.DataFrame([row]),
        run_date=run_day,
        run_id=f"{run_day:%Y%m%d}-v3:{cohort}",
        scope="performance",
        model_version="3",
    )


def test_performance_sensor_fires_once_per_champion_and_breach_episode(sensor_env):
    resource, settings, champion = sensor_env
    sensor = Ticker(sensor_module.performance_retrain_sensor, resource)
    assert _skipped(sensor.tick(), "no matured scoring cohort")

    run = date(2026, 11, 1)
    _record_cohort(settings, run, "2026-08-01", 0.81)
    assert _skipped(sensor.tick(), "0.810")

    _record_cohort(settings, run + timedelta(7), "2026-08-08", 0.70)
    assert _fired(sensor.tick())

    # the same champion keeps breaching week after week (say the retrain was refused): one
    # episode, one retrain; a cohort without a figure neither breaches nor recovers
    _record_cohort(settings, run + timedelta(14), "2026-08-15", 0.71)
    assert _skipped(sensor.tick(), "already started", "2 cohort(s) below since 2026-08-08")
    _record_cohort(settings, run + timedelta(21), "2026-08-22", None)
    assert _skipped(sensor.tick(), "already started")
    _record_cohort(settings, run + timedelta(28), "2026-08-29", 0.69)
    assert _skipped(sensor.tick(), "already started")

    # recovery, then a new breach: a new episode
    _record_cohort(settings, run + timedelta(35), "2026-09-05", 0.78)
    assert _skipped(sensor.tick(), "0.780")
    _record_cohort(settings, run + timedelta(42), "2026-09-12", 0.72)
    assert _fired(sensor.tick())

    # a later measurement of the same cohort (late conversions) is the one that counts
    _record_cohort(settings, run + timedelta(43), "2026-09-12", 0.77)
    assert _skipped(sensor.tick(), "0.770")
    assert sensor.run_keys == [
        "performance:v3:since-2026-08-08",
        "performance:v3:since-2026-09-12",
    ]


def test_performance_episode_survives_a_lost_cursor(sensor_env):
    """The episode comes from the store's history: a fresh cursor names the same episode, so
    Dagster's run-key de-duplication still starts no second run."""
    resource, settings, _ = sensor_env
    _record_cohort(settings, date(2026, 11, 1), "2026-08-08", 0.70)
    _record_cohort(settings, date(2026, 11, 8), "2026-08-15", 0.72)
    first = Ticker(sensor_module.performance_retrain_sensor, resource).tick()
    _record_cohort(settings, date(2026, 11, 15), "2026-08-22", 0.73)
    fresh = Ticker(sensor_module.performance_retrain_sensor, resource).tick()
    assert _fired(first) and _fired(fresh)
    assert first.run_requests[0].run_key == fresh.run_requests[0].run_key
    assert fresh.run_requests[0].run_key == "performance:v3:since-2026-08-08"


# --- new labels -------------------------------------------------------------------------------


def _write_labels(settings, leads_before: int, leads_after: int, snapshots_after: int) -> None:
    """`leads_before` leads labelled on the champion's last training snapshot, `leads_after`
    other leads each labelled on `snapshots_after` weekly snapshots after it."""
    old = pd.Timestamp("2026-08-31")
    rows = [(f"O{i}", old) for i in range(leads_before)]
    rows += [
        (f"N{i}", pd.Timestamp("2026-09-07") + pd.Timedelta(weeks=w))
        for i in range(leads_after)
        for w in range(snapshots_after)
    ]
    settings.paths.marts_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["lead_id", "snapshot_ts"]).to_parquet(
        settings.paths.marts_dir / "lead_labels.parquet"
    )


def test_new_labels_sensor_counts_distinct_leads_after_the_training_data(sensor_env):
    resource, settings, _ = sensor_env
    sensor = Ticker(sensor_module.new_labels_retrain_sensor, resource)
    assert _skipped(sensor.tick(), "no labels yet")

    # 3,000 new leads on two snapshots each: 6,000 (lead, snapshot) rows, 3,000 leads
    _write_labels(settings, leads_before=9000, leads_after=3000, snapshots_after=2)
    result = sensor.tick()
    assert not _fired(result)
    assert _skipped(result, "3000 leads with a new matured label", "< 5000")

    _write_labels(settings, leads_before=9000, leads_after=5000, snapshots_after=2)
    assert _fired(sensor.tick())
    assert sensor.run_keys == ["new-labels:v3:5000"]


def test_new_labels_sensor_rearms_each_time_another_threshold_matures(sensor_env):
    """A refused retrain leaves the champion in place: the sensor fires again once another
    5,000 leads have matured, not never again."""
    resource, settings, champion = sensor_env
    sensor = Ticker(sensor_module.new_labels_retrain_sensor, resource)
    for new_leads, expected in [
        (5200, "fired"),
        (7000, "skipped"),
        (9999, "skipped"),
        (10_000, "fired"),
        (12_000, "skipped"),
        (15_100, "fired"),
    ]:
        _write_labels(settings, leads_before=100, leads_after=new_leads, snapshots_after=1)
        result = sensor.tick()
        assert (isinstance(result, dg.SensorResult)) == (expected == "fired"), new_leads
    assert sensor.run_keys == ["new-labels:v3:5000", "new-labels:v3:10000", "new-labels:v3:15000"]

    # a promoted retrain moves the training cut-off: the count starts again
    champion.info = ChampionInfo(
        version="4", last_training_snapshot=pd.Timestamp("2026-12-31", tz="UTC")
    )
    assert _skipped(sensor.tick(), "0 leads with a new matured label")
