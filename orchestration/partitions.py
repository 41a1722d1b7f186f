"""Daily partitions: one per CRM scoring date.

The partition key is the date scoring writes (`lead_score_history.scoring_date`) and monitoring
measures; both read it from the run's partition, so no step works a date out for itself. Local
dates in the schedules' timezone, from `schedules.first_scoring_date` to today.
"""

from datetime import date

import dagster as dg

from ml.config import Settings, load_settings
from ml.errors import ConfigError


def scoring_dates(settings: Settings) -> dg.DailyPartitionsDefinition:
    """The daily partitions of the settings' schedules (today's partition included: the
    nightly run scores the day it starts on)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.schedules.first_scoring_date.isoformat(),
        timezone=settings.schedules.timezone,
        end_offset=1,
    )


# Asset definitions are built at import, so the partitions come from the default settings file.
SCORING_DATES = scoring_dates(load_settings())


def partition_date(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    """The scoring date of the partition being run."""
    return date.fromisoformat(context.partition_key)


def scoring_date_key(day: date) -> str:
    """The partition key of a scoring date; an error naming the valid range if it has none."""
    key = day.isoformat()
    if not SCORING_DATES.has_partition_key(key):
        raise ConfigError(
            f"no scoring partition for {key}: the daily partitions run from "
            f"schedules.first_scoring_date ({SCORING_DATES.start.date().isoformat()}) to today "
            f"in {SCORING_DATES.timezone}; pick a date in that range"
        )
    return key
