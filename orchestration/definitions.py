"""The one Dagster code location of the platform: `dg dev` (pyproject.toml `[tool.dg]`)."""

from __future__ import annotations

import dagster as dg

from ml.config import load_settings
from orchestration.assets.data import raw_crm_files
from orchestration.assets.dbt import crm_dbt_models, mart_parquet
from orchestration.assets.feast import feast_registry, online_store
from orchestration.assets.model import challenger_model, champion_model, training_set
from orchestration.assets.monitoring import drift_report
from orchestration.assets.scoring import crm_lead_scores
from orchestration.checks import ALL_CHECKS
from orchestration.jobs import nightly_scoring_job, weekly_retrain_job
from orchestration.resources import build_resources
from orchestration.schedules import build_schedules
from orchestration.sensors import sensors

ALL_ASSETS = [
    raw_crm_files,
    crm_dbt_models,
    mart_parquet,
    feast_registry,
    online_store,
    training_set,
    challenger_model,
    champion_model,
    crm_lead_scores,
    drift_report,
]


def build_definitions(
    data_dir: str | None = None, config_path: str | None = None
) -> dg.Definitions:
    """The Definitions, with every store under `data_dir` (default: the settings' data dir)."""
    settings = load_settings(
        config_path, overrides={"paths.data_dir": data_dir} if data_dir else None
    )
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[nightly_scoring_job, weekly_retrain_job],
        schedules=build_schedules(settings),
        sensors=sensors,
        resources=build_resources(data_dir=data_dir, config_path=config_path),
        # Steps are short and share one machine: running them in one process avoids ~3 s of
        # process start-up per step.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
