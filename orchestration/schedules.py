"""Schedules: nightly scoring and weekly retraining, times and timezone from the settings."""

import dagster as dg

from ml.config import Settings
from orchestration.jobs import nightly_scoring_job, weekly_retrain_job


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    tz = settings.schedules.timezone

    @dg.schedule(
        name="nightly_scoring_schedule",
        job=nightly_scoring_job,
        cron_schedule=settings.schedules.nightly_scoring_cron,
        execution_timezone=tz,
    )
    def nightly_scoring_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Every night: the partition of the scheduled local date (scores and monitoring of
        that CRM date)."""
        scoring_date = context.scheduled_execution_time.date().isoformat()
        return dg.RunRequest(
            run_key=f"nightly:{scoring_date}",
            partition_key=scoring_date,
            tags={"trigger": "schedule"},
        )

    @dg.schedule(
        name="weekly_retrain_schedule",
        job=weekly_retrain_job,
        cron_schedule=settings.schedules.weekly_retrain_cron,
        execution_timezone=tz,
    )
    def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Every week: retrain on the latest matured labels; the gate decides promotion."""
        week = context.scheduled_execution_time.strftime("%G-W%V")
        return dg.RunRequest(
            run_key=f"weekly:{week}",
            run_config={
                "ops": {"champion_model": {"config": {"reason": f"weekly retrain {week}"}}}
            },
            tags={"trigger": "schedule", "week": week},
        )

    return [nightly_scoring_schedule, weekly_retrain_schedule]
