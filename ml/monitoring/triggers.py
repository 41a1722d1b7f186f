"""Retraining triggers of the original design, as plain functions the sensors call.

- data drift: PSI > monitoring.psi_threshold (0.2) on a model feature in the latest drift run;
- performance: AUC on matured labels < monitoring.auc_threshold (0.75) in the latest cohort;
- new labels: ≥ monitoring.new_labels_threshold (5,000) matured labels newer than the champion's
  training data.

Each returns a `TriggerDecision` whose `key` names the condition (the champion version plus what
crossed the line), so a sensor can start one run per condition and skip it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml.config import Settings
from ml.monitoring.store import read_metrics


@dataclass(frozen=True)
class TriggerDecision:
    fire: bool
    reason: str
    key: str | None = None


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    last_training_snapshot: pd.Timestamp | None


def champion_info(settings: Settings) -> ChampionInfo | None:
    """The champion's version and the last snapshot of its training data, or None."""
    from mlflow.exceptions import MlflowException

    from ml.registry import mlflow_client

    client = mlflow_client(settings)
    try:
        version = client.get_model_version_by_alias(settings.registry.model_name, "champion")
    except MlflowException:
        return None
    last = version.tags.get("training_snapshot_max")
    return ChampionInfo(
        version=str(version.version),
        # naive tags are UTC (the marts store UTC without offsets)
        last_training_snapshot=pd.to_datetime(last, utc=True) if last else None,
    )


def _latest_run(metrics: pd.DataFrame, version: str) -> pd.DataFrame:
    mine = metrics[metrics["model_version"].astype(str) == version]
    if mine.empty:
        return mine
    latest = mine.sort_values("recorded_at").iloc[-1]["run_id"]
    return mine[mine["run_id"] == latest]


def drift_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    run = _latest_run(read_metrics(settings, scope="data_drift"), champion.version)
    if run.empty:
        return TriggerDecision(False, f"no drift run recorded yet for champion v{champion.version}")
    psi = run[run["metric"] == "psi"]
    threshold = settings.monitoring.psi_threshold
    drifted = sorted(psi.loc[psi["value"] > threshold, "feature"].astype(str))
    run_id = run["run_id"].iloc[0]
    if not drifted:
        worst = psi.sort_values("value", ascending=False).head(1)
        detail = (
            f"max PSI {worst['value'].iloc[0]:.3f} on {worst['feature'].iloc[0]}"
            if not worst.empty
            else "no PSI figures"
        )
        return TriggerDecision(False, f"no feature drifted in run {run_id}: {detail} ≤ {threshold}")
    return TriggerDecision(
        True,
        f"PSI > {threshold} on {', '.join(drifted)} (run {run_id}, champion v{champion.version})",
        key=f"data-drift:v{champion.version}:{'+'.join(drifted)}",
    )


def performance_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    perf = read_metrics(settings, scope="performance")
    perf = perf[(perf["model_version"].astype(str) == champion.version) & (perf["metric"] == "auc")]
    if perf.empty:
        return TriggerDecision(
            False,
            f"no matured scoring cohort of champion v{champion.version} yet (labels take "
            f"{settings.features.label_window_days} days to mature)",
        )
    latest = perf.sort_values(["cohort", "recorded_at"]).iloc[-1]
    threshold = settings.monitoring.auc_threshold
    cohort = str(latest["cohort"])
    if latest["value"] >= threshold:
        return TriggerDecision(
            False, f"AUC {latest['value']:.3f} on matured cohort {cohort} ≥ {threshold}"
        )
    return TriggerDecision(
        True,
        f"AUC {latest['value']:.3f} < {threshold} on matured cohort {cohort} "
        f"(champion v{champion.version})",
        key=f"performance:v{champion.version}:{cohort}",
    )


def new_labels_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    labels_file = settings.paths.marts_dir / "lead_labels.parquet"
    if not labels_file.is_file():
        return TriggerDecision(False, f"no labels yet ({labels_file} missing)")
    if champion.last_training_snapshot is None:
        return TriggerDecision(False, f"champion v{champion.version} has no training-set tag")
    snapshots = pd.read_parquet(labels_file, columns=["snapshot_ts"])["snapshot_ts"]
    snapshots = pd.to_datetime(snapshots, utc=True)
    new = int((snapshots > champion.last_training_snapshot).sum())
    threshold = settings.monitoring.new_labels_threshold
    if new < threshold:
        return TriggerDecision(
            False,
            f"{new} new matured labels since {champion.last_training_snapshot:%Y-%m-%d} "
            f"< {threshold}",
        )
    return TriggerDecision(
        True,
        f"{new} new matured labels since champion v{champion.version}'s training data "
        f"(≥ {threshold})",
        key=f"new-labels:v{champion.version}",
    )
