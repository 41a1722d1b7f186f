"""Raw CRM files in the landing zone: generated for the demo, validated for real exports."""

import dagster as dg
from pydantic import Field

from ml.data.landing import RAW_CONTRACT, validate_landing_zone
from orchestration.resources import SettingsResource

# The same keys dagster-dbt gives the dbt sources (source `crm`), so lineage joins up.
RAW_KEYS = {name: dg.AssetKey(["crm", name]) for name in RAW_CONTRACT}


class RawDataConfig(dg.Config):
    generate: bool = Field(
        default=False,
        description="Fill the landing zone with the deterministic generator (demo) first.",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key, group_name="raw", description=f"Raw CRM {name} (data/raw/{name}.csv)")
        for name, key in RAW_KEYS.items()
    ],
    can_subset=False,
)
def raw_crm_files(
    context: dg.AssetExecutionContext, config: RawDataConfig, settings: SettingsResource
):
    """Validate the landed CRM files (and generate them first when asked)."""
    s = settings.load()
    if config.generate:
        from ml.data.generator import generate_from_settings

        summary = generate_from_settings(s)
        context.log.info("generated %s leads, %s activities", summary.n_leads, summary.n_activities)
    report = validate_landing_zone(s.paths.raw_dir)
    for name, landed in report.files.items():
        yield dg.MaterializeResult(
            asset_key=RAW_KEYS[name],
            metadata={
                "rows": dg.MetadataValue.int(landed.rows),
                "bytes": dg.MetadataValue.int(landed.bytes),
                "path": dg.MetadataValue.path(str(landed.path)),
                "generated": config.generate,
            },
        )
