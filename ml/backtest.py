"""Rolling-origin backtest: every candidate family judged on the same out-of-time folds.

Each fold has an origin T (`ml.train.backtest_origins`): the model learns and validates only on
snapshots whose labels had matured by T (`ml.train.cut_at`) and is tested on the snapshots of
[T, T + test_days). Per fold: AUC, PR-AUC, Precision@K, Recall@K, F1 at the validation
threshold, Brier, ECE, the oracle's AUC on the same rows (generated data only) and the share of
the oracle's lift over chance the model achieves, (AUC − 0.5) / (oracle AUC − 0.5). Means come
with a 95 % t-interval over the folds.

The family with the best mean AUC becomes the champion candidate; within
`training.tie_tolerance` the simpler family wins (rules before logistic before xgboost).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ml.config import Settings
from ml.errors import DataError
from ml.evaluate import Evaluation, evaluate
from ml.model import FAMILIES, LABEL, ORACLE
from ml.request import ASSUMED_FOR_NEW
from ml.train import FitResult, Split, backtest_origins, cut_at, fit_tuned, mask_optional_fields

log = logging.getLogger(__name__)

FULL, REQUEST = "full", "request"


def mean_ci95(values: list[float]) -> tuple[float, tuple[float, float]]:
    """Mean and 95 % t-interval of the mean (NaNs left out; a single value has no interval)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    mean = float(v.mean())
    if v.size < 2:
        return mean, (mean, mean)
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, (mean - half, mean + half)


def lift_share(auc: float, oracle_auc: float | None) -> float:
    """Share of the oracle's lift over chance: (AUC − 0.5) / (oracle AUC − 0.5)."""
    if oracle_auc is None or math.isnan(oracle_auc) or oracle_auc <= 0.5:
        return float("nan")
    return (auc - 0.5) / (oracle_auc - 0.5)


def fold_metrics(evaluation: Evaluation) -> dict[str, float]:
    """The per-fold figures of one evaluation."""
    top = next(iter(evaluation.top_k.values()))
    return {
        "auc": evaluation.auc_roc,
        "pr_auc": evaluation.pr_auc,
        "precision_at_k": top["precision"],
        "recall_at_k": top["recall"],
        "f1": evaluation.at_threshold.get("f1", float("nan")),
        "brier": evaluation.brier,
        "ece": evaluation.ece,
        "oracle_auc": float("nan") if evaluation.oracle_auc is None else evaluation.oracle_auc,
        "lift_share_of_oracle": lift_share(evaluation.auc_roc, evaluation.oracle_auc),
        "rows": float(evaluation.n),
        "positives": float(evaluation.positives),
    }


@dataclass
class FoldFit:
    origin: date
    family: str
    model: str  # full | request
    fit: FitResult
    metrics: dict[str, float]
    probability: np.ndarray = field(repr=False)


@dataclass
class BacktestReport:
    """Every (fold, family, model) fit, its metrics and out-of-fold predictions."""

    origins: list[date]
    embargo_days: int
    fits: list[FoldFit]
    tests: dict[date, pd.DataFrame] = field(repr=False)
    tie_tolerance: float = 0.0
    request_new_lead_days: int | None = None  # the request model's rows: leads younger than this

    def figures(self, family: str, model: str = FULL) -> list[dict[str, float]]:
        return [f.metrics for f in self.fits if f.family == family and f.model == model]

    def mean(self, family: str, metric: str = "auc", model: str = FULL) -> float:
        return mean_ci95([m[metric] for m in self.figures(family, model)])[0]

    def families(self, model: str = FULL) -> list[str]:
        return [f for f in FAMILIES if any(x.family == f and x.model == model for x in self.fits)]

    def best_family(self, model: str = FULL) -> str:
        """Best mean AUC; within tie_tolerance of the best, the simplest family."""
        means = {f: self.mean(f, model=model) for f in self.families(model)}
        if not means:
            raise DataError(f"the backtest has no {model} model to choose from")
        top = max(means.values())
        close = [f for f, m in means.items() if m >= top - self.tie_tolerance - 1e-12]
        return max(close, key=FAMILIES.index)  # later in FAMILIES = simpler

    def out_of_fold(self, family: str, model: str = FULL) -> tuple[pd.DataFrame, np.ndarray]:
        """All folds' test rows and the family's predictions for them, oldest fold first."""
        fits = [f for f in self.fits if f.family == family and f.model == model]
        frame = pd.concat([self.tests[f.origin] for f in fits], ignore_index=True)
        return frame, np.concatenate([f.probability for f in fits])

    def summary(self, champion: str | None = None, request: str | None = None) -> dict[str, Any]:
        """The `backtest` block of `lead-scoring train --json`."""
        champion = champion or self.best_family(FULL)
        rows = []
        for origin in self.origins:
            row: dict[str, Any] = {"origin": str(origin), "family": champion}
            for f in self.fits:
                if f.origin != origin:
                    continue
                if f.family == champion and f.model == FULL:
                    row.update({k: _round(v) for k, v in f.metrics.items()})
                else:
                    row[f"{f.family}_{f.model}_auc"] = _round(f.metrics["auc"])
            rows.append(row)
        aucs = [m["auc"] for m in self.figures(champion)]
        auc_mean, ci = mean_ci95(aucs)
        out: dict[str, Any] = {
            "folds": rows,
            "embargo_days": self.embargo_days,
            "champion_family": champion,
            "auc_mean": _round(auc_mean),
            "auc_ci95": [_round(ci[0]), _round(ci[1])],
            "lift_share_of_oracle_mean": _round(self.mean(champion, "lift_share_of_oracle")),
            "oracle_auc_mean": _round(self.mean(champion, "oracle_auc")),
            "baseline_logistic_auc_mean": _round(self.mean("logistic")),
            "baseline_rules_auc_mean": _round(self.mean("rules")),
            "families": {
                f: {"auc_mean": _round(m), "auc_ci95": [_round(c[0]), _round(c[1])]}
                for f in self.families(FULL)
                for m, c in [mean_ci95([x["auc"] for x in self.figures(f)])]
            },
        }
        for name in ("pr_auc", "precision_at_k", "recall_at_k", "f1", "brier", "ece"):
            out[f"{name}_mean"] = _round(self.mean(champion, name))
        if self.families(REQUEST):
            request = request or self.best_family(REQUEST)
            r_mean, r_ci = mean_ci95([m["auc"] for m in self.figures(request, REQUEST)])
            # measured on the new leads of each test window, with the rules baseline on the
            # same rows (the full model's figures are on every open lead)
            out["request_model"] = {
                "family": request, "auc_mean": _round(r_mean),
                "auc_ci95": [_round(r_ci[0]), _round(r_ci[1])],
                "baseline_rules_auc_mean": _round(self.mean(request, "rules_auc", REQUEST)),
                "new_lead_days": self.request_new_lead_days,
            }
        return out

    def fold_aucs(self, family: str, model: str = FULL) -> dict[str, float]:
        """Origin → AUC, what the promotion gate compares version against version."""
        return {str(f.origin): float(f.metrics["auc"]) for f in self.fits
                if f.family == family and f.model == model}

    def table(self) -> pd.DataFrame:
        """One row per (origin, family, model) with every metric, for MLflow and the page."""
        return pd.DataFrame([{"origin": str(f.origin), "family": f.family, "model": f.model,
                              **f.metrics} for f in self.fits])


def _round(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def new_leads(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows of leads in their first `training.request_new_lead_days`: what the request
    model learns from and is measured on."""
    return frame[frame["days_since_created"] < settings.training.request_new_lead_days]


def request_training_split(split: Split, settings: Settings) -> Split:
    """The split the request model learns from: the new leads' rows (`new_leads`), train and
    validation with the optional request fields blanked at random
    (training.request_mask_share), so "not given" is learned."""
    cfg = settings.training
    # What a form may leave empty: every request feature a new lead does not have by definition.
    optional = [f for f in cfg.request_features if f not in ASSUMED_FOR_NEW]
    seed = cfg.seed
    train, validation = new_leads(split.train, settings), new_leads(split.validation, settings)
    return Split(
        train=mask_optional_fields(train, optional, cfg.request_mask_share, seed),
        validation=mask_optional_fields(validation, optional, cfg.request_mask_share, seed + 1),
        test=new_leads(split.test, settings), train_start=split.train_start,
        validation_start=split.validation_start, test_start=split.test_start,
        test_end=split.test_end, embargo_days=split.embargo_days)


def run_backtest(frame: pd.DataFrame, settings: Settings, *,
                 families: list[str] | None = None, request_model: bool = True) -> BacktestReport:
    """Fit every family on every fold and measure it on the fold's test window.

    Raises:
        DataError: a fold cannot be cut (too little history), or has one class only.
    """
    cfg = settings.training
    families = list(families or cfg.families)
    origins = backtest_origins(frame, settings)
    fits: list[FoldFit] = []
    tests: dict[date, pd.DataFrame] = {}
    for origin in origins:
        split = cut_at(frame, origin, settings)
        if split.test[LABEL].nunique() < 2:
            raise DataError(f"the test window of the fold at {origin} has one class only; "
                            "provide more history or widen training.split.test_days")
        tests[origin] = split.test
        jobs: list[tuple[str, str, Split, list[str] | None]] = [
            (family, FULL, split, None) for family in families]
        if request_model and cfg.request_features:
            masked = request_training_split(split, settings)
            jobs += [(family, REQUEST, masked, list(cfg.request_features))
                     for family in families if family != "rules"]
        for family, model, part, features in jobs:
            fit = fit_tuned(part, settings, family=family, features=features,
                            search=cfg.request_xgboost_search if model == REQUEST else None)
            # the request model on new leads only (part.test), the rules baseline beside it
            test = split.test if model == FULL else part.test
            truth = test[ORACLE].to_numpy() if ORACLE in test.columns else None
            evaluation = evaluate(fit.scorer, test, settings, truth_probability=truth)
            metrics = fold_metrics(evaluation)
            if model == REQUEST:
                metrics["rules_auc"] = evaluation.baselines.get("rules", float("nan"))
            fits.append(FoldFit(origin, family, model, fit, metrics, evaluation.scores))
            log.info("fold %s %s/%s: AUC %.4f", origin, family, model, evaluation.auc_roc)
    return BacktestReport(origins=origins, embargo_days=settings.embargo_days, fits=fits,
                          tests=tests, tie_tolerance=cfg.tie_tolerance,
                          request_new_lead_days=cfg.request_new_lead_days)
