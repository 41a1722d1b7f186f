"""Raw CRM files in the landing zone: generated for the demo, landed from a CRM export by its
mapping, or validated as dropped there."""

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
    mapping: str | None = Field(
        default=None,
        description="Land a CRM export first with this mapping (config/crm_mappings/NAME.yaml "
        "or a path); needs export_dir.",
    )
    export_dir: str | None = Field(
        default=None, description="The folder holding the CRM's export files (with mapping)."
    )
    merge: bool = Field(
        default=False,
        description="The export is a nightly increment: upsert it into the raw files by id.",
    )


def _landing_metadata(file_report) -> dict[str, dg.MetadataValue]:
    """The landing report's figures of one contract file, as asset metadata."""
    totals: dict[str, int] = {}
    for column in file_report.columns.values():
        for outcome, n in column.counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    meta: dict[str, dg.MetadataValue] = {
        "landed_rows_in": dg.MetadataValue.int(file_report.rows_in),
        "landed_rows_out": dg.MetadataValue.int(file_report.rows_out),
        "landed_dropped": dg.MetadataValue.json(file_report.dropped),
    }
    for outcome, n in totals.items():
        meta[f"values_{outcome}"] = dg.MetadataValue.int(n)
    return meta


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
    """Validate the landed CRM files (generating them, or landing a CRM export, first when
    asked)."""
    s = settings.load()
    if config.generate:
        from ml.data.generator import generate_from_settings

        summary = generate_from_settings(s)
        context.log.info("generated %s leads, %s activities", summary.n_leads, summary.n_activities)
    landing = None
    if config.mapping or config.export_dir:
        if not (config.mapping and config.export_dir):
            raise dg.Failure("raw_crm_files: give both mapping and export_dir to land an export")
        from pathlib import Path

        from ml.landing import land_from_settings

        landing = land_from_settings(
            s, config.mapping, Path(config.export_dir), merge=config.merge
        )
        context.log.info("landed %s export: %s", landing.vendor, landing.summary())
    report = validate_landing_zone(s.paths.raw_dir)
    for name, landed in report.files.items():
        metadata = {
            "rows": dg.MetadataValue.int(landed.rows),
            "bytes": dg.MetadataValue.int(landed.bytes),
            "path": dg.MetadataValue.path(str(landed.path)),
            "generated": config.generate,
        }
        if landing is not None and name in landing.files:
            metadata.update(_landing_metadata(landing.files[name]))
            metadata["landing_report"] = dg.MetadataValue.path(f"{landing.report_dir}/report.html")
        yield dg.MaterializeResult(asset_key=RAW_KEYS[name], metadata=metadata)
