"""The code location loads; schedules and sensors behave; dbt tests are asset checks."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from ml.monitoring.store import record_metrics
from ml.monitoring.triggers import ChampionInfo
from orchestration import sensors as sensor_module
from orchestration.assets.dbt import crm_dbt_models
from orchestration.definitions import ALL_ASSETS, build_definitions, defs
from orchestration.resources import SettingsResource, build_resources


def test_definitions_load_with_every_domain():
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    for expected in (
        "crm/leads",
        "stg_crm__leads",
        "lead_features",
        "mart_parquet",
        "feast_registry",
        "online_store",
        "training_set",
        "challenger_model",
        "champion_model",
        "crm_lead_scores",
        "drift_report",
    ):
        assert expected in keys
    assert {j.name for j in repo.get_all_jobs()} >= {"nightly_scoring", "weekly_retrain"}
    assert len(ALL_ASSETS) == 10


def test_dbt_tests_are_asset_checks():
    checks = {spec.name for spec in crm_dbt_models.check_specs}
    assert any(name.startswith("rejected_share_at_most") for name in checks)
    assert any(name.startswith("unique_combination_of_columns_lead_features") for name in checks)
    assert len(checks) > 50


def test_schedules_use_the_configured_times_and_pass_the_scoring_date():
    repo = defs.get_repository_def()
    nightly = repo.get_schedule_def("nightly_scoring_schedule")
    weekly = repo.get_schedule_def("weekly_retrain_schedule")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("0 2 * * *", "Asia/Dubai")
    assert (weekly.cron_schedule, weekly.execution_timezone) == ("0 3 * * 0", "Asia/Dubai")

    at = datetime(2026, 11, 26, 2, 0, tzinfo=ZoneInfo("Asia/Dubai"))
    request = nightly.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=at))
    run = request.run_requests[0]
    assert run.run_config == {
        "ops": {"crm_lead_scores": {"config": {"scoring_date": "2026-11-26"}}}
    }
    assert run.run_key == "nightly:2026-11-26"

    sunday = datetime(2026, 11, 29, 3, 0, tzinfo=ZoneInfo("Asia/Dubai"))
    request = weekly.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=sunday))
    assert request.run_requests[0].run_key == "weekly:2026-W48"


@pytest.fixture()
def sensor_env(tmp_path, monkeypatch):
    """A data dir with an empty monitoring store and a stand-in champion v3."""
    champion = ChampionInfo(
        version="3", last_training_snapshot=pd.Timestamp("2026-09-01", tz="UTC")
    )
    monkeypatch.setattr(sensor_module, "champion_info", lambda settings: champion)
    resource = SettingsResource(data_dir=str(tmp_path))
    return resource, resource.load()


def _tick(sensor, resource, cursor=None):
    context = dg.build_sensor_context(cursor=cursor, resources={"settings": resource})
    return sensor(context)


def _drift_rows(psi: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "feature": "lead_source",
                "metric": "psi",
                "value": psi,
                "threshold": 0.2,
                "status": "drift" if psi > 0.2 else "ok",
            },
            {
                "feature": "company_size",
                "metric": "psi",
                "value": 0.01,
                "threshold": 0.2,
                "status": "ok",
            },
        ]
    )


def test_drift_sensor_fires_once_per_condition(sensor_env):
    resource, settings = sensor_env
    skip = _tick(sensor_module.drift_retrain_sensor, resource)
    assert isinstance(skip, dg.SkipReason) and "no drift run" in skip.skip_message

    record_metrics(
        settings,
        _drift_rows(0.05),
        run_date=datetime(2026, 11, 1).date(),
        run_id="r1",
        scope="data_drift",
        model_version="3",
    )
    skip = _tick(sensor_module.drift_retrain_sensor, resource)
    assert isinstance(skip, dg.SkipReason) and "0.050" in skip.skip_message

    record_metrics(
        settings,
        _drift_rows(0.35),
        run_date=datetime(2026, 11, 2).date(),
        run_id="r2",
        scope="data_drift",
        model_version="3",
    )
    fired = _tick(sensor_module.drift_retrain_sensor, resource)
    assert isinstance(fired, dg.SensorResult)
    (request,) = fired.run_requests
    assert request.run_key == "data-drift:v3:lead_source"
    again = _tick(sensor_module.drift_retrain_sensor, resource, cursor=fired.cursor)
    assert isinstance(again, dg.SkipReason) and "already started" in again.skip_message


def test_performance_sensor_fires_below_the_auc_threshold(sensor_env):
    resource, settings = sensor_env
    row = {"metric": "auc", "threshold": 0.75, "cohort": "2026-08-01"}
    record_metrics(
        settings,
        pd.DataFrame([{**row, "value": 0.81, "status": "ok"}]),
        run_date=datetime(2026, 11, 1).date(),
        run_id="p1",
        scope="performance",
        model_version="3",
    )
    skip = _tick(sensor_module.performance_retrain_sensor, resource)
    assert isinstance(skip, dg.SkipReason) and "0.810" in skip.skip_message

    late = {**row, "cohort": "2026-08-08", "value": 0.70, "status": "breach"}
    record_metrics(
        settings,
        pd.DataFrame([late]),
        run_date=datetime(2026, 11, 2).date(),
        run_id="p2",
        scope="performance",
        model_version="3",
    )
    fired = _tick(sensor_module.performance_retrain_sensor, resource)
    assert fired.run_requests[0].run_key == "performance:v3:2026-08-08"
    again = _tick(sensor_module.performance_retrain_sensor, resource, cursor=fired.cursor)
    assert isinstance(again, dg.SkipReason)


def test_new_labels_sensor_counts_labels_after_the_training_data(sensor_env):
    resource, settings = sensor_env
    skip = _tick(sensor_module.new_labels_retrain_sensor, resource)
    assert isinstance(skip, dg.SkipReason) and "no labels yet" in skip.skip_message

    settings.paths.marts_dir.mkdir(parents=True)
    old = pd.Timestamp("2026-08-31")
    new = pd.Timestamp("2026-09-07")
    labels = pd.DataFrame(
        {"lead_id": [f"L{i}" for i in range(9000)], "snapshot_ts": [old] * 5000 + [new] * 4000}
    )
    labels.to_parquet(settings.paths.marts_dir / "lead_labels.parquet")
    skip = _tick(sensor_module.new_labels_retrain_sensor, resource)
    assert isinstance(skip, dg.SkipReason) and "4000 new matured labels" in skip.skip_message

    more = pd.concat([labels, labels.tail(1000).assign(lead_id=lambda f: f.lead_id + "b")])
    more.to_parquet(settings.paths.marts_dir / "lead_labels.parquet")
    fired = _tick(sensor_module.new_labels_retrain_sensor, resource)
    assert fired.run_requests[0].run_key == "new-labels:v3"
    assert isinstance(
        _tick(sensor_module.new_labels_retrain_sensor, resource, fired.cursor), dg.SkipReason
    )


def test_build_definitions_points_every_store_at_the_data_dir(tmp_path):
    assert build_definitions(data_dir=str(tmp_path)).get_repository_def() is not None
    settings = build_resources(data_dir=str(tmp_path))["settings"].load()
    assert settings.paths.warehouse.is_relative_to(tmp_path)
    assert settings.paths.crm_url.endswith(f"{tmp_path}/crm/crm.db")


@pytest.mark.parametrize(
    ("job", "rule"),
    [("nightly_scoring", "nightly_run_failure"), ("weekly_retrain", "model_failure")],
)
def test_a_failed_run_sends_a_critical_alert(tmp_path, job, rule):
    import json

    resource = SettingsResource(data_dir=str(tmp_path))
    results = sensor_module.failure_alert(resource, job, "run-1", "dbt build failed")
    assert any(r.channel == "jsonl" and r.status == "sent" for r in results)
    path = resource.load().alerting.channels.jsonl.path
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (record["rule"], record["severity"]) == (rule, "critical")
    sensor_names = {s.name for s in defs.get_repository_def().sensor_defs}
    assert "run_failure_alert_sensor" in sensor_names
