"""Training: time-based split, XGBoost with native categoricals, calibration and baselines.

Input is a training frame: one row per (lead_id, snapshot) with the feature columns of the
`lead_scoring` feature service and the label `converted_within_window` (docs/contracts.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ml.config import Settings
from ml.errors import DataError
from ml.model import LABEL, SNAPSHOT_COLUMNS, Calibrator, LeadScorer, feature_columns

log = logging.getLogger(__name__)

RULES_COLUMN = "engagement_score"  # the sales team's hand-weighted rule, the incumbent
CALIBRATION_FOLDS = 5


def snapshot_column(frame: pd.DataFrame) -> str:
    """The frame's snapshot timestamp column: `snapshot_ts` (mart) or `event_timestamp` (Feast)."""
    for name in SNAPSHOT_COLUMNS:
        if name in frame.columns:
            return name
    raise DataError(f"the training frame has no snapshot column (one of {SNAPSHOT_COLUMNS})")


def snapshot_dates(frame: pd.DataFrame) -> pd.Series:
    """Calendar date (UTC) of each row's snapshot, as datetime64 at midnight."""
    ts = pd.to_datetime(frame[snapshot_column(frame)], utc=True)
    return ts.dt.tz_convert(None).dt.normalize()


@dataclass
class Split:
    """Train / validation / test frames and the dates that cut them (test_end inclusive)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    train_start: date
    validation_start: date
    test_start: date
    test_end: date

    def summary(self) -> dict[str, Any]:
        """Row and positive counts and boundary dates, for logs and MLflow params."""
        out: dict[str, Any] = {
            "train_start": str(self.train_start), "validation_start": str(self.validation_start),
            "test_start": str(self.test_start), "test_end": str(self.test_end),
        }
        for name in ("train", "validation", "test"):
            part = getattr(self, name)
            out[f"{name}_rows"] = len(part)
            out[f"{name}_positives"] = int(part[LABEL].sum())
        return out


def split_by_time(frame: pd.DataFrame, settings: Settings) -> Split:
    """Cut the frame by snapshot date (settings.training.split).

    Explicit dates win. Otherwise the last `test_days` of matured snapshots are test and the
    `validation_days` before are validation; everything earlier (from `train_start`) is train,
    minus `embargo_days` before validation_start. Rows without a label (immature) are dropped.

    Raises:
        DataError: the label or snapshot column is missing, or a split is empty.
    """
    cfg = settings.training.split
    if LABEL not in frame.columns:
        raise DataError(f"the training frame has no label column `{LABEL}`")
    labelled = frame[frame[LABEL].notna()]
    if len(labelled) < len(frame):
        log.info("dropping %d rows without a matured label", len(frame) - len(labelled))
    if labelled.empty:
        raise DataError("the training frame has no labelled rows; are any label windows mature?")
    day = snapshot_dates(labelled)
    last = day.max().date()
    test_start = cfg.test_start or last - timedelta(days=cfg.test_days - 1)
    validation_start = cfg.validation_start or test_start - timedelta(days=cfg.validation_days)
    train_start = cfg.train_start or day.min().date()
    if not train_start < validation_start < test_start:
        raise DataError(
            f"split dates out of order: train_start {train_start}, validation_start "
            f"{validation_start}, test_start {test_start} (settings training.split)")
    train_end = validation_start - timedelta(days=cfg.embargo_days)
    ts = {name: pd.Timestamp(d) for name, d in
          (("train", train_start), ("train_end", train_end), ("val", validation_start),
           ("test", test_start))}
    parts = {
        "train": labelled[(day >= ts["train"]) & (day < ts["train_end"])],
        "validation": labelled[(day >= ts["val"]) & (day < ts["test"])],
        "test": labelled[day >= ts["test"]],
    }
    for name, part in parts.items():
        if part.empty:
            raise DataError(
                f"the {name} split is empty (snapshots {day.min().date()}..{last}; train_start "
                f"{train_start}, validation_start {validation_start}, test_start {test_start}); "
                "adjust training.split in the settings or provide more history")
    split = Split(**{k: v.reset_index(drop=True) for k, v in parts.items()},
                  train_start=train_start, validation_start=validation_start,
                  test_start=test_start, test_end=last)
    log.info("time split: %s", split.summary())
    return split


@dataclass
class CalibrationReport:
    """Validation Brier of each candidate (cross-fitted on validation) and the one kept."""

    method: str  # "none", "isotonic" or "sigmoid"
    brier: dict[str, float]
    requested: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "requested": self.requested, "brier": dict(self.brier)}


@dataclass
class Baselines:
    """What the model must beat, fitted on the same split."""

    logistic: Pipeline
    logistic_test_auc: float
    rules_test_auc: float
    feature_names: list[str]
    categorical_features: list[str]

    def logistic_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability from the logistic-regression baseline."""
        x = _linear_input(frame, self.feature_names, self.categorical_features)
        with threadpool_limits(1, user_api="blas"):
            return self.logistic.predict_proba(x)[:, 1]

    @staticmethod
    def rules_score(frame: pd.DataFrame) -> np.ndarray:
        """The rules score (engagement_score, 0–100); missing counts as 0."""
        return pd.to_numeric(frame[RULES_COLUMN], errors="coerce").fillna(0.0).to_numpy(float)


@dataclass
class TrainingResult:
    scorer: LeadScorer
    best_iteration: int
    baselines: Baselines
    calibration: CalibrationReport
    params: dict[str, Any]
    timings: dict[str, float]
    split_summary: dict[str, Any] = field(default_factory=dict)
    validation_auc: float = float("nan")


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(brier_score_loss(y, np.clip(p, 0.0, 1.0)))


def choose_calibration(margin: np.ndarray, y: np.ndarray, requested: str,
                       seed: int) -> tuple[Calibrator | None, CalibrationReport]:
    """Pick and fit the calibrator on validation (margin, label) pairs.

    Each candidate's Brier is measured out-of-fold (5-fold cross-fitting on validation), because
    an isotonic fit scored on its own data always looks better than it is. With `auto` the
    candidate with the lowest Brier is kept if it beats the uncalibrated model; the final
    calibrator is then refitted on all of validation.
    """
    margin = np.asarray(margin, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    brier = {"none": _brier(y, expit(margin))}
    candidates = ["isotonic", "sigmoid"] if requested == "auto" else (
        [] if requested == "none" else [requested])
    folds = min(CALIBRATION_FOLDS, int(y.sum()), int(len(y) - y.sum()))
    for method in candidates:
        if folds < 2:
            brier[method] = float("nan")
            continue
        oof = np.empty_like(margin)
        kfold = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for fit_idx, eval_idx in kfold.split(margin, y):
            cal = Calibrator.fit(method, margin[fit_idx], y[fit_idx])  # type: ignore[arg-type]
            oof[eval_idx] = cal.transform(margin[eval_idx])
        brier[method] = _brier(y, oof)
    if requested == "auto":
        scored = {m: b for m, b in brier.items() if not np.isnan(b)}
        chosen = min(scored, key=lambda m: (scored[m], m != "none"))
    else:
        chosen = requested
    calibrator = None if chosen == "none" else Calibrator.fit(chosen, margin, y)  # type: ignore[arg-type]
    report = CalibrationReport(method=chosen, brier=brier, requested=requested)
    log.info("calibration: kept %s (validation Brier %s)", chosen,
             {k: round(v, 5) for k, v in brier.items()})
    return calibrator, report


def max_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 (ties: the higher cut, fewer leads flagged)."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = f1[:-1]  # the last point has no threshold
    if len(thresholds) == 0:
        return 0.5
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(thresholds[best])


def _linear_input(frame: pd.DataFrame, features: list[str], categorical: list[str],
                  ) -> pd.DataFrame:
    """Features for the linear baseline: categoricals as plain strings (missing: "missing")."""
    out = frame[features].copy()
    for name in categorical:
        out[name] = out[name].astype(object).where(out[name].notna(), "missing").astype(str)
    for name in features:
        if name not in categorical:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out


def fit_logistic_baseline(train: pd.DataFrame, features: list[str], categorical: list[str],
                          seed: int) -> Pipeline:
    """Logistic regression: one-hot categoricals; imputed (+ missing flags), scaled numerics."""
    numeric = [c for c in features if c not in categorical]
    pre = ColumnTransformer([
        ("categorical", OneHotEncoder(handle_unknown="ignore", min_frequency=5), categorical),
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                  StandardScaler()), numeric),
    ])
    model = Pipeline([("features", pre),
                      ("classifier", LogisticRegression(max_iter=2000, random_state=seed))])
    # lbfgs on a few dozen columns gains nothing from threaded BLAS and, on a busy machine,
    # loses 10-40x to thread contention; one thread is also bit-for-bit reproducible.
    with threadpool_limits(1, user_api="blas"):
        return model.fit(_linear_input(train, features, categorical), train[LABEL].astype(int))


def _check_class_counts(train: pd.DataFrame, settings: Settings) -> None:
    positives = int(train[LABEL].sum())
    negatives = int(len(train) - positives)
    cfg = settings.training
    if positives < cfg.min_positive_examples:
        raise DataError(
            f"too few converted examples to train: {positives} positives in {len(train)} training "
            f"rows, need at least {cfg.min_positive_examples} (training.min_positive_examples); "
            "provide more history or lower the setting")
    if negatives < cfg.min_negative_examples:
        raise DataError(
            f"too few non-converted examples to train: {negatives} negatives in {len(train)} "
            f"training rows, need at least {cfg.min_negative_examples} "
            "(training.min_negative_examples); provide more history or lower the setting")


def _categories(train: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    # Sorted so the level order (hence category codes and model bytes) does not depend on the
    # order rows arrive in.
    return {c: sorted(str(v) for v in train[c].dropna().unique()) for c in categorical}


def xgboost_params(settings: Settings) -> dict[str, Any]:
    """The booster parameters derived from settings.training."""
    x = settings.training.xgboost
    return {
        "objective": "binary:logistic",
        "eval_metric": x.eval_metric,
        "tree_method": "hist",
        "learning_rate": x.learning_rate,
        "max_depth": x.max_depth,
        "min_child_weight": x.min_child_weight,
        "subsample": x.subsample,
        "colsample_bytree": x.colsample_bytree,
        "reg_lambda": x.reg_lambda,
        "max_cat_to_onehot": x.max_cat_to_onehot,
        "nthread": x.n_jobs,
        "seed": settings.training.seed,
    }


def train_model(split: Split, settings: Settings) -> TrainingResult:
    """Fit the XGBoost scorer with early stopping on validation, calibrate it, fit baselines.

    Deterministic: the same split and settings give byte-identical boosters.

    Raises:
        DataError: training has fewer positives/negatives than the configured minimum.
    """
    _check_class_counts(split.train, settings)
    cfg = settings.training
    categorical = list(cfg.categorical_features)
    features = feature_columns(categorical)
    timings: dict[str, float] = {}

    scorer = LeadScorer(feature_names=features, categorical_features=categorical,
                        categories=_categories(split.train, categorical), booster=xgb.Booster())
    y_train = split.train[LABEL].astype(int).to_numpy()
    y_val = split.validation[LABEL].astype(int).to_numpy()
    params = xgboost_params(settings)

    started = time.perf_counter()
    dtrain = xgb.DMatrix(scorer.prepare(split.train), label=y_train, enable_categorical=True)
    dval = xgb.DMatrix(scorer.prepare(split.validation), label=y_val, enable_categorical=True)
    booster = xgb.train(
        params, dtrain, num_boost_round=cfg.xgboost.n_estimators, evals=[(dval, "validation")],
        early_stopping_rounds=cfg.xgboost.early_stopping_rounds, verbose_eval=False)
    best_iteration = int(booster.best_iteration)
    # Keep only the trees up to the best round, so every consumer (inplace_predict, SHAP,
    # the saved file) sees the same model without having to pass iteration ranges.
    scorer.booster = booster[: best_iteration + 1]
    timings["boosting_s"] = time.perf_counter() - started
    log.info("xgboost: best iteration %d of %d", best_iteration, booster.num_boosted_rounds())

    started = time.perf_counter()
    val_margin = scorer.margin(split.validation)
    scorer.calibrator, calibration = choose_calibration(
        val_margin, y_val, cfg.calibration, cfg.seed)
    val_proba = scorer.predict_proba(split.validation)
    scorer.decision_threshold = max_f1_threshold(y_val, val_proba)
    timings["calibration_s"] = time.perf_counter() - started

    started = time.perf_counter()
    logistic = fit_logistic_baseline(split.train, features, categorical, cfg.seed)
    y_test = split.test[LABEL].astype(int).to_numpy()
    baselines = Baselines(logistic=logistic, logistic_test_auc=float("nan"),
                          rules_test_auc=float("nan"), feature_names=features,
                          categorical_features=categorical)
    if len(np.unique(y_test)) == 2:
        lr_test = baselines.logistic_proba(split.test)
        baselines.logistic_test_auc = float(roc_auc_score(y_test, lr_test))
        baselines.rules_test_auc = float(roc_auc_score(y_test, Baselines.rules_score(split.test)))
    timings["baselines_s"] = time.perf_counter() - started

    validation_auc = (float(roc_auc_score(y_val, val_proba)) if len(np.unique(y_val)) == 2
                      else float("nan"))
    summary = split.summary()
    scorer.metadata = {
        **summary,
        "best_iteration": best_iteration,
        "calibration": calibration.method,
        "decision_threshold_rule": "max F1 on validation",
        "config_hash": settings.config_hash(),
        "xgboost_version": xgb.__version__,
    }
    log.info("trained: validation AUC %.4f, threshold %.4f, baselines LR %.4f rules %.4f",
             validation_auc, scorer.decision_threshold, baselines.logistic_test_auc,
             baselines.rules_test_auc)
    return TrainingResult(
        scorer=scorer, best_iteration=best_iteration, baselines=baselines,
        calibration=calibration,
        params={**params, "num_boost_round": cfg.xgboost.n_estimators,
                "early_stopping_rounds": cfg.xgboost.early_stopping_rounds,
                "calibration": cfg.calibration},
        timings=timings, split_summary=summary, validation_auc=validation_auc)

