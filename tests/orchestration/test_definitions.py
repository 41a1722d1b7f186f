"""The code location loads; schedules behave; dbt tests are asset checks (the retraining
sensors are tested in test_sensors.py)."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from ml.config import load_settings
from ml.errors import ConfigError
from orchestration import sensors as sensor_module
from orchestration.assets.dbt import crm_dbt_models
from orchestration.definitions import ALL_ASSETS, build_definitions, defs
from orchestration.partitions import SCORING_DATES, scoring_date_key
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
    python_checks = {
        (key.asset_key.to_user_string(), key.name)
        for key in repo.asset_graph.asset_check_keys
        if key.asset_key.to_user_string() in ("crm_lead_scores", "training_set", "challenger_model")
    }
    assert python_checks == {
        ("crm_lead_scores", "one_score_per_open_lead"),
        ("training_set", "training_positives_at_least_minimum"),
        ("challenger_model", "challenger_auc_at_least_gate"),
    }


def test_scoring_and_monitoring_are_partitioned_by_the_configured_scoring_dates():
    repo = defs.get_repository_def()
    settings = load_settings()
    for key in ("crm_lead_scores", "drift_report"):
        partitions = repo.asset_graph.get(dg.AssetKey(key)).partitions_def
        assert partitions == SCORING_DATES
    assert SCORING_DATES.start.date() == settings.schedules.first_scoring_date
    assert SCORING_DATES.timezone == settings.schedules.timezone
    # the demo's date is a partition; a date before the first one is refused by name
    assert scoring_date_key(settings.generator.end_date) == "2026-11-01"
    with pytest.raises(ConfigError, match="schedules.first_scoring_date"):
        scoring_date_key(settings.schedules.first_scoring_date - timedelta(days=1))
    assert defs.resolve_job_def("nightly_scoring").partitions_def == SCORING_DATES
    assert defs.resolve_job_def("weekly_retrain").partitions_def is None


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
    request = nightly.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    )
    run = request.run_requests[0]
    assert run.partition_key == "2026-11-26" and not run.run_config
    assert run.run_key == "nightly:2026-11-26"

    sunday = datetime(2026, 11, 29, 3, 0, tzinfo=ZoneInfo("Asia/Dubai"))
    request = weekly.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=sunday))
    assert request.run_requests[0].run_key == "weekly:2026-W48"


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
