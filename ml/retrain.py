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

from ml.backtest import FULL, REQUEST, BacktestReport, request_training_split, run_backtest
from ml.config import Settings
from ml.evaluate import Evaluation, evaluate_predictions
from ml.model import ORACLE
from ml.model_card import log_model_card
from ml.plots import plot_all, plot_backtest
from ml.registry import (
    FOLD_AUCS_TAG,
    ModelVersionInfo,
    PromotionDecision,
    find_identical_version,
    log_and_register,
    point_challenger,
    promote,
    reproducibility_tags,
)
from ml.train import FitResult, final_split, fit_tuned, snapshot_dates

log = logging.getLogger(__name__)




@dataclass
class ChallengerReport:
    version: ModelVersionInfo
    evaluation: Evaluation  # pooled out-of-fold predictions of the chosen family
    training: FitResult  # the final refit on all matured labels
    backtest: BacktestReport
    metrics: dict[str, float]
    report_dir: Path
    plots: dict[str, Path] = field(default_factory=dict)
    reused: bool = False  # an identical version existed; nothing new was registered

    def summary(self) -> dict[str, Any]:
        backtest = self.backtest.summary(self.training.family, self.request_family)
        return {
            "model_version": self.version.version,
            "new_version": not self.reused,
            "run_id": self.version.run_id,
            "champion_family": self.training.family,
            "backtest": backtest,
            "auc_mean": backtest["auc_mean"],
            "auc_ci95": backtest["auc_ci95"],
            "lift_share_of_oracle_mean": backtest["lift_share_of_oracle_mean"],
            "request_model": backtest.get("request_model"),
            "calibration": self.training.calibration.method,
            "best_iteration": self.training.best_iteration,
            "report_dir": str(self.report_dir),
        }

    @property
    def request_family(self) -> str | None:
        request = self.training.scorer.request_scorer
        return None if request is None else request.family


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
    """Backtest every family, refit the best on all matured labels (with its request model),
    and register the pair as a new `@challenger`.

    The figures logged with the version are the backtest's: per-fold metrics, their means and
    95 % intervals, and plots of the pooled out-of-fold predictions. Nothing is measured on rows
    whose labels the model could have learned from.
    """
    cfg = settings.training
    backtest = run_backtest(frame, settings)
    family = backtest.best_family(FULL)
    split = final_split(frame, settings)
    final = fit_tuned(split, settings, family=family)
    request: FitResult | None = None
    if cfg.request_features:
        request_family = backtest.best_family(REQUEST)
        request = fit_tuned(request_training_split(split, settings), settings,
                            family=request_family, features=list(cfg.request_features),
                            search=cfg.request_xgboost_search)
        final.scorer.request_scorer = request.scorer
    oof, probability = backtest.out_of_fold(family)
    baselines = {name: backtest.out_of_fold(name)[1] for name in backtest.families(FULL)
                 if name != family}
    evaluation = evaluate_predictions(
        oof, probability, settings, threshold=float(final.scorer.decision_threshold or 0.5),
        threshold_source="max F1 on validation (final refit)",
        truth_probability=oof[ORACLE].to_numpy() if ORACLE in oof.columns else None,
        baseline_scores=baselines)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report_dir = settings.paths.reports_dir / "training" / stamp
    plots = plot_all(evaluation, final.scorer, report_dir / "plots")
    plots["backtest"] = plot_backtest(backtest, report_dir / "plots" / "backtest.png")
    evaluation_file = report_dir / "evaluation.json"
    summary = backtest.summary(family, final.scorer.request_scorer.family
                               if final.scorer.request_scorer else None)
    evaluation_file.write_text(json.dumps(
        {"backtest": summary, "out_of_fold": evaluation.to_dict()}, indent=2, default=str))
    backtest_file = report_dir / "backtest.csv"
    backtest.table().to_csv(backtest_file, index=False)

    metrics = {f"oof_{k}": v for k, v in evaluation.metrics().items()}
    metrics.update({
        f"backtest_{k}": v for k, v in summary.items()
        if isinstance(v, float) and k != "embargo_days"})
    metrics["backtest_auc_ci95_low"], metrics["backtest_auc_ci95_high"] = summary["auc_ci95"]
    # The gate's figure: the mean AUC over the backtest folds.
    metrics["test_auc"] = summary["auc_mean"]
    if summary.get("request_model"):
        metrics["request_backtest_auc_mean"] = summary["request_model"]["auc_mean"]
    metrics["validation_auc"] = final.validation_auc
    if final.best_iteration is not None:
        metrics["best_iteration"] = float(final.best_iteration)
    metrics = {k: float(v) for k, v in metrics.items() if v is not None and not np.isnan(v)}
    inputs = frame.drop(columns=[ORACLE], errors="ignore")
    tags = reproducibility_tags(
        settings,
        inputs,
        feature_service=_feature_service_text(settings),
        snapshot_column="event_timestamp" if "event_timestamp" in inputs else "snapshot_ts",
        extra={
            "test_window_start": str(backtest.origins[0]),
            "test_window_end": str(max(snapshot_dates(t).max().date()
                                       for t in backtest.tests.values())),
            "calibration": final.calibration.method,
            "family": family,
            "request_family": summary.get("request_model", {}).get("family", ""),
            "embargo_days": str(backtest.embargo_days),
            FOLD_AUCS_TAG: json.dumps(backtest.fold_aucs(family), sort_keys=True),
            # every family's figures on these folds: the gate's like-for-like fallback when a
            # champion shares no fold with this version
            **{f"{FOLD_AUCS_TAG}.{name}": json.dumps(backtest.fold_aucs(name), sort_keys=True)
               for name in backtest.families(FULL)},
        },
    )
    params = {**final.params, **split.summary(), "backtest_folds": len(backtest.origins),
              "backtest_step_days": cfg.backtest.step_days,
              # the request model's parameters too: which search entry won is recorded
              **({f"request.{k}": v for k, v in request.params.items()} if request else {})}
    existing = find_identical_version(settings, tags)
    if existing is not None:
        log.info(
            "v%s was trained from the same code, settings and data: reusing it", existing.version
        )
        point_challenger(settings, existing.version, reason="retrained identically", actor=actor)
        return ChallengerReport(existing, evaluation, final, backtest, metrics, report_dir, plots,
                                reused=True)
    info = log_and_register(
        final.scorer,
        params=params,
        metrics=metrics,
        artifacts={"plots": report_dir / "plots", "evaluation.json": evaluation_file,
                   "backtest.csv": backtest_file},
        tags=tags,
        input_example=final.scorer.prepare(split.validation.head(5)).reset_index(drop=True),
        settings=settings,
        actor=actor,
    )
    log_model_card(settings, info.version)  # the version's card, logged to its run (ml/model_card)
    log.info("registered v%s (%s) as @challenger: backtest AUC %.4f", info.version, family,
             summary["auc_mean"])
    return ChallengerReport(info, evaluation, final, backtest, metrics, report_dir, plots)


def promote_challenger(
    settings: Settings,
    *,
    reason: str,
    actor: str,
    version: int | None = None,
    force: bool = False,
) -> PromotionDecision:
    """The one promotion door (`ml.registry.promote`): champion and challenger compared on
    their common backtest folds."""
    return promote(settings, version, reason=reason, actor=actor, force=force)
