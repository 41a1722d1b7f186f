"""Feast: register the feature definitions, then refresh the online store from the marts."""

import dagster as dg

from orchestration.assets.dbt import mart_parquet
from orchestration.resources import FeastResource


@dg.asset(
    group_name="features",
    deps=[mart_parquet],
    description="Feast registry: entity lead, views lead_profile/lead_engagement, "
    "service lead_scoring.",
)
def feast_registry(feast: FeastResource) -> dg.MaterializeResult:
    applied = feast.apply()
    return dg.MaterializeResult(metadata={"applied": dg.MetadataValue.json(sorted(applied))})


@dg.asset(
    group_name="features",
    deps=[feast_registry, mart_parquet],
    description="Feast online store: latest features of every open lead (batched refresh).",
)
def online_store(feast: FeastResource) -> dg.MaterializeResult:
    stats = feast.refresh_online()
    return dg.MaterializeResult(
        metadata={
            "leads_read": dg.MetadataValue.int(stats.leads_read),
            "leads_written": dg.MetadataValue.int(stats.leads_written),
            "leads_unchanged": dg.MetadataValue.int(stats.leads_unchanged),
            "seconds": dg.MetadataValue.float(round(stats.seconds, 2)),
        }
    )
