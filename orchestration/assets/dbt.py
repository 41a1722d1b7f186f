"""dbt models as assets: one `dbt build` streams each model and each test (as an asset check)."""

import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets, get_asset_key_for_model

from orchestration.project import PREPARE_COMMAND, dbt_project
from orchestration.resources import SettingsResource

# Marts exported to Parquet for Feast and the ML steps.
EXPORTED_MARTS = ("lead_features", "lead_features_latest", "lead_labels", "lead_conversions")

if not dbt_project.manifest_path.is_file():
    raise FileNotFoundError(
        f"the dbt manifest {dbt_project.manifest_path} is missing: prepare the dbt project with "
        f"`{PREPARE_COMMAND}` (python -m orchestration.project); `make dagster` prepares it itself"
    )


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project)
def crm_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: SettingsResource
):
    """Staging, intermediate and mart models; a failing dbt test fails this step and so
    stops everything downstream (the exported marts keep their previous good version)."""
    from ml.warehouse import dbt_environment, dbt_vars, thread_args

    s = settings.load()
    s.paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with dbt_environment(s):
        invocation = dbt.cli(
            ["build", "--vars", json.dumps(dbt_vars(s)), *thread_args(s)], context=context
        )
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
