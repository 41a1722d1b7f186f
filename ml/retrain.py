"""Retraining as one sequence of plain steps: training set → challenger → gate.

`train_challenger` splits by time, trains, evaluates on the test window (with the oracle AUC on
generated data and the baselines), writes the plots and logs everything as a new registered
version aliased `@challenger`. `promote_challenger` runs the gate, re-scoring the champion on
the challenger's own test window so the comparison is like for like.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.config import Settings
from ml.evaluate import Evaluation, evaluate
from ml.model import LABEL, LeadScorer
from ml.plots import plot_all
from ml.registry import (
    ModelVersionInfo,
    PromotionDecision,
    find_identical_version,
    log_and_register,
    point_challenger,
    promote,
    reproducibility_tags,
)
from ml.train import TrainingResult, snapshot_dates, split_by_time, train_model

log = logging.getLogger(__name__)

ORACLE = "oracle_probability"


@dataclass
class ChallengerReport:
    version: ModelVersionInfo
    evaluation: Evaluation
    training: TrainingResult
    metrics: dict[str, float]
    report_dir: Path
    plots: dict[str, Path] = field(default_factory=dict)
    reused: bool = False  # an identical version existed; nothing new was registered

    def summary(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "model_version": self.version.version,
            "new_version": not self.reused,
            "run_id": self.version.run_id,
            "test_auc": round(m.get("test_auc", float("nan")), 4),
            "oracle_auc": round(m["test_oracle_auc"], 4) if "test_oracle_auc" in m else None,
            "auc_ratio_to_oracle": round(m["test_auc_ratio_to_oracle"], 4)
            if "test_auc_ratio_to_oracle" in m
            else None,
            "baseline_logistic_auc": round(m.get("test_baseline_logistic_auc", float("nan")), 4),
            "baseline_rules_auc": round(m.get("test_baseline_rules_auc", float("nan")), 4),
            "pr_auc": round(m.get("test_pr_auc", float("nan")), 4),
            "brier": round(m.get("test_brier", float("nan")), 4),
            "calibration": self.training.calibration.method,
            "report_dir": str(self.report_dir),
        }


def training_set_path(settings: Settings) -> Path:
    return settings.paths.data_dir / "training" / "training_set.parquet"


def save_training_set(settings: Settings, frame: pd.DataFrame) -> Path:
    """Write the training set atomically (the drift reference and the retrain input)."""
    path = training_set_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_training_set(settings: Settings) -> pd.DataFrame:
    from ml.errors import DataError

    path = training_set_path(settings)
    if not path.is_file():
        raise DataError(f"no training set at {path}; run `lead-scoring train` (it builds one)")
    return pd.read_parquet(path)


def _feature_service_text(settings: Settings) -> str | None:
    try:
        from ml.feature_store import feature_service, get_store

        service = feature_service(get_store(settings), settings)
        return json.dumps(
            {
                "name": service.name,
                "features": {
                    p.name: [f.name for f in p.features] for p in service.feature_view_projections
                },
            },
            sort_keys=True,
        )
    except Exception as exc:  # the tag is informative; training must not fail on it
        log.warning("could not render the feature service for the version tags: %s", exc)
        return None


def train_challenger(
    settings: Settings, frame: pd.DataFrame, *, actor: str = "lead-scoring train"
) -> ChallengerReport:
    """Train, evaluate and register a new `@challenger` from a training set."""
    split = split_by_time(frame, settings)
    result = train_model(split, settings)
    truth = split.test[ORACLE].to_numpy() if ORACLE in split.test.columns else None
    evaluation = evaluate(
        result.scorer, split.test, settings, truth_probability=truth, baselines=result.baselines
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report_dir = settings.paths.reports_dir / "training" / stamp
    plots = plot_all(evaluation, result.scorer, report_dir / "plots")
    evaluation_file = report_dir / "evaluation.json"
    evaluation_file.write_text(json.dumps(evaluation.to_dict(), indent=2, default=str))

    metrics = {f"test_{k}": v for k, v in evaluation.metrics().items()}
    metrics["test_auc"] = evaluation.auc_roc
    metrics["validation_auc"] = result.validation_auc
    metrics["best_iteration"] = float(result.best_iteration)
    metrics = {k: float(v) for k, v in metrics.items() if v is not None and not np.isnan(v)}
    inputs = frame.drop(columns=[ORACLE], errors="ignore")
    tags = reproducibility_tags(
        settings,
        inputs,
        feature_service=_feature_service_text(settings),
        snapshot_column="event_timestamp" if "event_timestamp" in inputs else "snapshot_ts",
        extra={
            "test_window_start": str(split.test_start),
            "test_window_end": str(split.test_end),
            "calibration": result.calibration.method,
        },
    )
    params = {**result.params, **split.summary()}
    existing = find_identical_version(settings, tags)
    if existing is not None:
        log.info(
            "v%s was trained from the same code, settings and data: reusing it", existing.version
        )
        point_challenger(settings, existing.version, reason="retrained identically", actor=actor)
        return ChallengerReport(
            existing, evaluation, result, metrics, report_dir, plots, reused=True
        )
    info = log_and_register(
        result.scorer,
        params=params,
        metrics=metrics,
        artifacts={"plots": report_dir / "plots", "evaluation.json": evaluation_file},
        tags=tags,
        input_example=result.scorer.prepare(split.test.head(5)).reset_index(drop=True),
        settings=settings,
        actor=actor,
    )
    log.info("registered v%s as @challenger: test AUC %.4f", info.version, evaluation.auc_roc)
    return ChallengerReport(info, evaluation, result, metrics, report_dir, plots)


def window_evaluator(frame: pd.DataFrame):  # noqa: ANN201 - ml.registry.Evaluator
    """AUC of any scorer on the rows of `frame` whose snapshot date lies in [start, end]."""
    days = snapshot_dates(frame)

    def auc_on_window(scorer: LeadScorer, start: str | None, end: str | None) -> float:
        mask = np.ones(len(frame), dtype=bool)
        if start:
            mask &= days >= pd.Timestamp(start)
        if end:
            mask &= days <= pd.Timestamp(end)
        window = frame[mask]
        y = window[LABEL].astype(int).to_numpy()
        if len(np.unique(y)) < 2:
            return float("nan")
        return float(roc_auc_score(y, scorer.predict_proba(window)))

    return auc_on_window


def promote_challenger(
    settings: Settings,
    frame: pd.DataFrame | None = None,
    *,
    reason: str,
    actor: str,
    version: int | None = None,
    force: bool = False,
) -> PromotionDecision:
    """The promotion gate; with the training set, the champion is re-scored on the
    challenger's test window."""
    evaluator = window_evaluator(frame) if frame is not None else None
    return promote(settings, version, reason=reason, actor=actor, force=force, evaluator=evaluator)
