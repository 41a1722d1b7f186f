"""Evidently reports of a monitoring run: data drift and prediction drift, HTML and JSON.

Both are computed on a random sample (seeded by the run date) of at most
`monitoring.report_sample_size` rows of the reference and of the current data; each HTML page
opens with a banner that states the sample sizes, the full row counts and the reference used.
The figures the platform acts on are those of `ml.monitoring.drift` on all rows; Evidently's
(PSI with the same threshold) are the evidence a person reads. Files go to
`<reports_dir>/monitoring/<run_date>/` and are logged to the champion's MLflow run under
`monitoring/<run_date>/`.
"""

from __future__ import annotations

import html
import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.config import Settings

log = logging.getLogger(__name__)


def _sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(frame) <= size:
        return frame.reset_index(drop=True)
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def _evidently_frame(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        if name in categorical:
            out[name] = out[name].astype(object).where(out[name].notna(), "(missing)").astype(str)
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out


def _save(snapshot: Any, path: Path, banner: str) -> tuple[Path, Path]:
    page = snapshot.get_html_str(as_iframe=False)
    note = (
        '<div style="font-family:sans-serif;padding:8px 16px;background:#fff7e0;'
        f'border-bottom:1px solid #e0c080">{banner}</div>'
    )
    at = page.find("<body")
    at = page.find(">", at) + 1 if at >= 0 else 0
    html_path, json_path = path.with_suffix(".html"), path.with_suffix(".json")
    html_path.write_text(page[:at] + note + page[at:], encoding="utf-8")
    snapshot.save_json(str(json_path))
    return html_path, json_path


def evidently_reports(
    settings: Settings,
    *,
    run_date: date,
    version: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reference_scores: np.ndarray,
    current_scores: np.ndarray,
    features: list[str],
    categorical: list[str],
    reference_description: str,
) -> dict[str, Path]:
    """Write data_drift.{html,json} and prediction_drift.{html,json}; returns name → path."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    from ml.scoring import assign_tiers

    out_dir = settings.paths.reports_dir / "monitoring" / run_date.isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    size, seed = settings.monitoring.report_sample_size, int(run_date.strftime("%Y%m%d"))
    cfg = settings.monitoring
    categorical = [c for c in features if c in categorical]
    numeric = [c for c in features if c not in categorical]

    ref = _evidently_frame(_sample(reference[features], size, seed), categorical)
    cur = _evidently_frame(_sample(current[features], size, seed + 1), categorical)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    banner = html.escape(
        f"Lead scoring — data drift, champion v{version}, run {run_date}. Evidently on a random "
        f"sample of {len(ref):,} of {len(reference):,} reference rows and {len(cur):,} of "
        f"{len(current):,} current rows (monitoring.report_sample_size = {size:,}); the "
        f"alerts use PSI on all rows. Reference: {reference_description}."
    )
    report = Report([DataDriftPreset(columns=features, method="psi", threshold=cfg.psi_threshold)])
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    paths: dict[str, Path] = {}
    paths["data_drift_html"], paths["data_drift_json"] = _save(
        snapshot, out_dir / "data_drift", banner
    )

    def scores_frame(scores: np.ndarray, seed_: int) -> pd.DataFrame:
        frame = pd.DataFrame({"probability": np.asarray(scores, dtype=float)})
        frame["tier"] = assign_tiers(np.round(frame["probability"].to_numpy() * 100, 1), settings)
        return _sample(frame, size, seed_)

    ref_s, cur_s = scores_frame(reference_scores, seed), scores_frame(current_scores, seed + 1)
    definition = DataDefinition(numerical_columns=["probability"], categorical_columns=["tier"])
    report = Report(
        [
            ValueDrift(column="probability", method="psi", threshold=cfg.psi_threshold),
            ValueDrift(column="probability", method="ks", threshold=cfg.ks_pvalue),
            ValueDrift(column="tier", method="psi", threshold=cfg.psi_threshold),
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(cur_s, data_definition=definition),
        Dataset.from_pandas(ref_s, data_definition=definition),
    )
    banner = html.escape(
        f"Lead scoring — prediction drift, champion v{version}, run {run_date}: score and tier "
        f"mix of {len(cur_s):,} of {len(current_scores):,} current scores against {len(ref_s):,} "
        f"of {len(reference_scores):,} scores on the champion's test window "
        f"(sample size monitoring.report_sample_size = {size:,})."
    )
    paths["prediction_drift_html"], paths["prediction_drift_json"] = _save(
        snapshot, out_dir / "prediction_drift", banner
    )
    return paths


def log_to_champion_run(
    settings: Settings, version: str, paths: dict[str, Path], run_date: date
) -> str | None:
    """Attach the report files to the MLflow run that produced `version`; returns the run id,
    or None (logged as a warning) when the registry or the run cannot be reached."""
    try:
        from ml.registry import mlflow_client

        client = mlflow_client(settings)
        run_id = client.get_model_version(settings.registry.model_name, str(version)).run_id
        if not run_id:
            return None
        for path in paths.values():
            client.log_artifact(run_id, str(path), artifact_path=f"monitoring/{run_date}")
        return run_id
    except Exception as exc:  # noqa: BLE001 - reports stay on disk; MLflow is a copy
        log.warning("could not log monitoring reports to MLflow for v%s: %s", version, exc)
        return None
