"""Monitoring: drift of the features and scores, matured-label performance, alerts."""

import dagster as dg

from orchestration.assets.dbt import mart_parquet
from orchestration.assets.model import champion_model
from orchestration.assets.scoring import crm_lead_scores
from orchestration.partitions import SCORING_DATES, partition_date
from orchestration.resources import SettingsResource


@dg.asset(
    group_name="monitoring",
    deps=[champion_model, mart_parquet, crm_lead_scores],
    partitions_def=SCORING_DATES,
    description="Data and prediction drift against the champion's training data, matured-label "
    "performance and business metrics; Evidently HTML/JSON reports; routed alerts.",
)
def drift_report(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    from ml.monitoring import run_monitoring, send_alerts

    s = settings.load()
    # the partition's date: the CRM date the scores of this run were written for
    report = run_monitoring(s, partition_date(context))
    alerts = send_alerts(s, report)
    summary = report.summary()
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in summary.items() if isinstance(v, int | float | str | bool)},
            "summary": dg.MetadataValue.json(summary),
            "alerts_sent": dg.MetadataValue.int(len(alerts)),
        }
    )
