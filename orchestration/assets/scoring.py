"""Batch scores into the CRM table: the champion on every open lead's latest features."""

from datetime import date

import dagster as dg

from ml import stores
from orchestration.assets.dbt import mart_parquet
from orchestration.assets.feast import online_store
from orchestration.assets.model import champion_model
from orchestration.resources import CrmResource, SettingsResource


class ScoringConfig(dg.Config):
    scoring_date: str | None = None  # ISO date; default the date of the data's as-of instant
    backfill_weeks: int = 0  # also score the weekly snapshots of the N weeks before (history)


@dg.asset(
    group_name="scoring",
    deps=[champion_model, mart_parquet, online_store],
    description="lead_scores (current) and lead_score_history (append) in the CRM database.",
)
def crm_lead_scores(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    settings: SettingsResource,
    crm: CrmResource,
) -> dg.MaterializeResult:
    from ml.batch import backfill_scores, score_open_leads

    s = settings.load()
    scoring_date = date.fromisoformat(config.scoring_date) if config.scoring_date else None
    backfilled = backfill_scores(s, config.backfill_weeks, run_id=context.run.run_id)
    summary = score_open_leads(s, scoring_date, run_id=context.run.run_id)
    return dg.MaterializeResult(
        metadata={
            "scored_leads": dg.MetadataValue.int(summary.rows),
            **{f"tier_{tier}": dg.MetadataValue.int(n) for tier, n in summary.tiers.items()},
            "new_leads": dg.MetadataValue.int(summary.new_leads),
            "backfilled_dates": dg.MetadataValue.int(len(backfilled)),
            "model_version": summary.model_version,
            "scoring_date": str(summary.scoring_date),
            "crm_database": stores.display_url(crm.url),
            "extract": dg.MetadataValue.path(summary.extract_path or ""),
            "seconds": dg.MetadataValue.json(summary.seconds),
        }
    )
