"""dbt models as assets: one `dbt build` streams each model and each test (as an asset check)."""

import json
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets, get_asset_key_for_model

from ml.config import PROJECT_ROOT, load_settings
from orchestration.resources import SettingsResource, environment

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
# Marts exported to Parquet for Feast and the ML steps.
EXPORTED_MARTS = ("lead_features", "lead_features_latest", "lead_labels", "lead_conversions")


def _sources_newer_than(path: Path) -> bool:
    if not path.exists():
        return True
    built = path.stat().st_mtime
    watched = [DBT_PROJECT_DIR / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        watched.extend((DBT_PROJECT_DIR / folder).rglob("*"))
    return any(p.is_file() and p.stat().st_mtime > built for p in watched)


def ensure_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than the project files.

    Dagster reads the manifest when the code location loads, so this runs at import (as
    dagster-dbt's own `prepare_if_dev` does); it needs no data and no warehouse.
    """
    if _sources_newer_than(MANIFEST_PATH):
        from ml.warehouse import run_dbt

        run_dbt(load_settings(), ["parse"], target_dir=MANIFEST_PATH.parent)
    return MANIFEST_PATH


@dbt_assets(manifest=ensure_manifest())
def crm_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: SettingsResource
):
    """Staging, intermediate and mart models; a failing dbt test fails this step and so
    stops everything downstream (the exported marts keep their previous good version)."""
    from ml.warehouse import dbt_env, dbt_vars

    s = settings.load()
    s.paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with environment(dbt_env(s)):
        invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars(s))], context=context)
        yield from invocation.stream()


def mart_key(model: str) -> dg.AssetKey:
    return get_asset_key_for_model([crm_dbt_models], model)


@dg.asset(
    group_name="marts",
    deps=[mart_key(name) for name in EXPORTED_MARTS],
    description="The marts Feast and the ML steps read, exported from the warehouse as Parquet.",
)
def mart_parquet(settings: SettingsResource) -> dg.MaterializeResult:
    from ml.warehouse import export_marts, rejected_counts

    s = settings.load()
    paths = export_marts(s)
    rejected = rejected_counts(s)
    import pyarrow.parquet as pq

    return dg.MaterializeResult(
        metadata={
            **{
                f"rows_{name}": dg.MetadataValue.int(pq.ParquetFile(p).metadata.num_rows)
                for name, p in paths.items()
            },
            **{f"rejected_{name}": dg.MetadataValue.int(n) for name, n in rejected.items()},
            "marts_dir": dg.MetadataValue.path(str(s.paths.marts_dir)),
        }
    )
