"""Sensors that start retraining: data drift, performance on matured labels, new labels.

Each reads what the monitoring runs recorded (ml.monitoring.triggers), starts one run per
condition (the run key names the champion version and the breach episode, or for new labels
how many thresholds of new leads have matured; the cursor keeps the keys already fired) and
otherwise says in its skip reason why it did not fire.
"""

import json
from collections.abc import Callable

import dagster as dg

from ml.monitoring.triggers import (
    ChampionInfo,
    TriggerDecision,
    champion_info,
    drift_trigger,
    new_labels_trigger,
    performance_trigger,
)
from orchestration.jobs import weekly_retrain_job
from orchestration.resources import SettingsResource

Trigger = Callable[..., TriggerDecision]


def _evaluate(
    context: dg.SensorEvaluationContext, settings: SettingsResource, trigger: Trigger, name: str
) -> dg.SensorResult | dg.SkipReason:
    s = settings.load()
    champion: ChampionInfo | None = champion_info(s)
    decision = trigger(s, champion)
    fired: list[str] = json.loads(context.cursor) if context.cursor else []
    if not decision.fire:
        return dg.SkipReason(decision.reason)
    if decision.key in fired:
        return dg.SkipReason(
            f"already started a retrain for this condition ({decision.key}): {decision.reason}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=decision.key,
                run_config={
                    "ops": {"champion_model": {"config": {"reason": f"{name}: {decision.reason}"}}}
                },
                tags={"trigger": name, "condition": decision.key or ""},
            )
        ],
        cursor=json.dumps([*fired, decision.key][-200:]),
    )


@dg.sensor(
    job=weekly_retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """Fires when a model feature's PSI in the latest drift run exceeds monitoring.psi_threshold;
    once per champion version and drift episode (consecutive drifting runs)."""
    return _evaluate(context, settings, drift_trigger, "data_drift")


@dg.sensor(
    job=weekly_retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def performance_retrain_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """Fires when the AUC of the latest matured scoring cohort is below monitoring.auc_threshold;
    once per champion version and breach episode (consecutive cohorts below the threshold)."""
    return _evaluate(context, settings, performance_trigger, "performance")


@dg.sensor(
    job=weekly_retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_labels_retrain_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """Fires when ≥ monitoring.new_labels_threshold distinct leads have a matured label newer
    than the champion's training data; again each time the count grows by another threshold."""
    return _evaluate(context, settings, new_labels_trigger, "new_labels")


# A failed run is a critical alert (the original design): the nightly job as
# `nightly_run_failure`, every other job (retraining) as `model_failure`.
FAILURE_RULES = {"nightly_scoring": "nightly_run_failure"}


def failure_alert(settings_resource: SettingsResource, job_name: str, run_id: str, error: str):
    """Route a critical alert for a failed run; returns the channels' results."""
    from ml.alerts import dispatch, event_alert

    s = settings_resource.load()
    rule = FAILURE_RULES.get(job_name, "model_failure")
    alert = event_alert(
        s,
        rule,
        f"{job_name} run failed",
        error[:2000],
        key=f"{rule}:{run_id}",
        details={"job": job_name, "run_id": run_id},
    )
    return dispatch(s, [alert])


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, settings: SettingsResource):
    """Sends a critical alert when any run fails (the previous good state stays in place)."""
    error = context.failure_event.message or "run failed"
    failure_alert(settings, context.dagster_run.job_name, context.dagster_run.run_id, error)


sensors = [
    drift_retrain_sensor,
    performance_retrain_sensor,
    new_labels_retrain_sensor,
    run_failure_alert_sensor,
]
