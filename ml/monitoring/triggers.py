"""Retraining triggers of the original design, as plain functions the sensors call.

- data drift: PSI > monitoring.psi_threshold (0.2) on a model feature in the latest drift run;
- performance: AUC on matured labels < monitoring.auc_threshold (0.75) in the latest cohort;
- new labels: ≥ monitoring.new_labels_threshold (5,000) distinct leads with a matured label
  newer than the champion's training data.

Each returns a `TriggerDecision` whose `key` names the condition that should start one retrain,
so a sensor can start one run per key and skip it afterwards:

- drift and performance are keyed by the champion version and the *episode*: an episode starts
  with the first breaching drift run (or matured cohort) after one that was fine, and lasts while
  every later one breaches. The episode is derived from the monitoring store's history, not from
  the sensor's memory, so a recovery the sensor never ticked through still ends the episode and a
  reset cursor does not re-fire an old one. A breach that persists week after week is one
  episode (one retrain, even when the retrain is refused); a recovery then a new breach is a new
  one.
- new labels are keyed by the champion version and how many whole thresholds of new leads have
  matured (`floor(count / threshold)`): 5,000 new leads fire once, 10,000 fire again (a refused
  retrain leaves the champion in place, and the sensor re-arms as labels keep arriving).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

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


def episode_start(breached: pd.Series) -> object | None:
    """The index label where the trailing run of True values in `breached` (ordered oldest
    first) begins, or None when the last value is False or the series is empty."""
    if breached.empty or not bool(breached.iloc[-1]):
        return None
    start = breached.index[-1]
    for label, value in zip(breached.index[::-1], breached.iloc[::-1], strict=True):
        if not value:
            break
        start = label
    return start


def drift_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    drift = read_metrics(settings, scope="data_drift")
    psi = drift[
        (drift["model_version"].astype(str) == champion.version) & (drift["metric"] == "psi")
    ]
    if psi.empty:
        return TriggerDecision(False, f"no drift run recorded yet for champion v{champion.version}")
    threshold = settings.monitoring.psi_threshold
    # one row per drift run of this champion, oldest first
    runs = (
        psi.assign(
            run_date=pd.to_datetime(psi["run_date"]).dt.date,
            drifted=psi["value"] > threshold,
        )
        .groupby("run_id", sort=False)
        .agg(
            run_date=("run_date", "first"),
            recorded_at=("recorded_at", "max"),
            drifted=("drifted", "any"),
        )
        .sort_values(["run_date", "recorded_at"])
    )
    run_id = runs.index[-1]
    latest = psi[psi["run_id"] == run_id]
    drifted = sorted(latest.loc[latest["value"] > threshold, "feature"].astype(str))
    if not drifted:
        worst = latest.sort_values("value", ascending=False).head(1)
        return TriggerDecision(
            False,
            f"no feature drifted in run {run_id}: max PSI {worst['value'].iloc[0]:.3f} on "
            f"{worst['feature'].iloc[0]} ≤ {threshold}",
        )
    start = runs.loc[episode_start(runs["drifted"]), "run_date"]
    return TriggerDecision(
        True,
        f"PSI > {threshold} on {', '.join(drifted)} (run {run_id}, champion v{champion.version}; "
        f"drifting since the run of {start})",
        key=f"data-drift:v{champion.version}:since-{start}",
    )


def performance_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    perf = read_metrics(settings, scope="performance")
    perf = perf[
        (perf["model_version"].astype(str) == champion.version)
        & (perf["metric"] == "auc")
        & perf["value"].notna()  # too few labels or one class: no figure, not a breach
    ]
    if perf.empty:
        return TriggerDecision(
            False,
            f"no matured scoring cohort of champion v{champion.version} yet (labels take "
            f"{settings.features.label_window_days} days to mature)",
        )
    threshold = settings.monitoring.auc_threshold
    # a cohort is measured by several runs as late conversions land: its latest figure counts
    cohorts = (
        perf.assign(cohort=perf["cohort"].astype(str))
        .sort_values(["cohort", "run_date", "recorded_at"])
        .groupby("cohort")["value"]
        .last()
    )
    cohort, auc = cohorts.index[-1], float(cohorts.iloc[-1])
    if auc >= threshold:
        return TriggerDecision(False, f"AUC {auc:.3f} on matured cohort {cohort} ≥ {threshold}")
    start = episode_start(cohorts < threshold)
    breaching = int((cohorts.index >= start).sum())
    return TriggerDecision(
        True,
        f"AUC {auc:.3f} < {threshold} on matured cohort {cohort} (champion v{champion.version}; "
        f"{breaching} cohort(s) below since {start})",
        key=f"performance:v{champion.version}:since-{start}",
    )


def _distinct_leads_after(labels_file: Path, since: pd.Timestamp) -> int:
    """Distinct lead_id with a snapshot_ts after `since`, reading only those rows' lead_id (the
    sensor runs every few minutes; the mart has a row per lead per weekly snapshot)."""
    dataset = ds.dataset(labels_file, format="parquet")
    ts_type = dataset.schema.field("snapshot_ts").type
    # the marts store naive UTC timestamps; compare like with like
    cutoff = since.tz_convert("UTC")
    if getattr(ts_type, "tz", None) is None:
        cutoff = cutoff.tz_localize(None)
    table = dataset.to_table(
        columns=["lead_id"],
        filter=ds.field("snapshot_ts") > pa.scalar(cutoff.to_pydatetime(), type=ts_type),
    )
    return int(pc.count_distinct(table["lead_id"]).as_py())


def new_labels_trigger(settings: Settings, champion: ChampionInfo | None) -> TriggerDecision:
    if champion is None:
        return TriggerDecision(False, "no champion model yet: nothing to retrain")
    labels_file = settings.paths.marts_dir / "lead_labels.parquet"
    if not labels_file.is_file():
        return TriggerDecision(False, f"no labels yet ({labels_file} missing)")
    since = champion.last_training_snapshot
    if since is None:
        return TriggerDecision(False, f"champion v{champion.version} has no training-set tag")
    # the mart has one row per (lead, snapshot) whose label window has closed; a lead scored on
    # many snapshots is still one new example of how leads turn out
    new = _distinct_leads_after(labels_file, since)
    threshold = settings.monitoring.new_labels_threshold
    if new < threshold:
        return TriggerDecision(
            False,
            f"{new} leads with a new matured label since {since:%Y-%m-%d} < {threshold}",
        )
    reached = new // threshold * threshold
    return TriggerDecision(
        True,
        f"{new} leads with a matured label newer than champion v{champion.version}'s training "
        f"data (≥ {reached}; fires again at {reached + threshold})",
        key=f"new-labels:v{champion.version}:{reached}",
    )
