"""Training: honest time cuts, one fit function for every model family, calibration.

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
from sklearn.metrics import brier_score_loss, log_loss, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from ml.config import Settings, XGBoostParams
from ml.errors import DataError
from ml.linear import LinearModel
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
    """One cut of the labelled snapshots: train / validation / test and the dates that cut them.

    `origin` is the first day of the test window. Every label in train and validation had
    matured by the origin (their snapshots lie at least the embargo before it); the final refit
    has an empty test window and its origin is the day after the last matured snapshot.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    train_start: date
    validation_start: date
    test_start: date  # the origin
    test_end: date  # inclusive
    embargo_days: int = 0

    @property
    def origin(self) -> date:
        return self.test_start

    def summary(self) -> dict[str, Any]:
        """Row and positive counts and boundary dates, for logs and MLflow params."""
        out: dict[str, Any] = {
            "train_start": str(self.train_start), "validation_start": str(self.validation_start),
            "test_start": str(self.test_start), "test_end": str(self.test_end),
            "embargo_days": self.embargo_days,
        }
        for name in ("train", "validation", "test"):
            part = getattr(self, name)
            out[f"{name}_rows"] = len(part)
            out[f"{name}_positives"] = int(part[LABEL].sum()) if len(part) else 0
        return out


def matured(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows with a matured label (on or after training.split.train_start).

    Raises:
        DataError: the label or snapshot column is missing, or no row is labelled.
    """
    if LABEL not in frame.columns:
        raise DataError(f"the training frame has no label column `{LABEL}`")
    labelled = frame[frame[LABEL].notna()]
    if len(labelled) < len(frame):
        log.info("dropping %d rows without a matured label", len(frame) - len(labelled))
    start = settings.training.split.train_start
    if start is not None:
        labelled = labelled[snapshot_dates(labelled) >= pd.Timestamp(start)]
    if labelled.empty:
        raise DataError("the training frame has no labelled rows; are any label windows mature?")
    return labelled


def cut_at(frame: pd.DataFrame, origin: date, settings: Settings, *,
           embargo_days: int | None = None) -> Split:
    """The fold whose test window starts at `origin`.

    Test: snapshots in [origin, origin + test_days). Validation: the `validation_days` of
    snapshots ending `embargo` days before the origin. Train: every earlier snapshot. So no
    train or validation label (converted within `label_window_days` after its snapshot) can
    see a conversion on or after the origin.

    `embargo_days` None takes the settings' embargo (validated: never below the label window).
    A smaller value leaks test-window conversions into the labels; it exists only to measure
    that inflation (tests/benchmarks/bench_backtest.py) and is logged as a warning.

    Raises:
        DataError: a part of the fold is empty (the message names the dates and the settings).
    """
    cfg = settings.training.split
    labelled = matured(frame, settings)
    day = snapshot_dates(labelled)
    embargo = settings.embargo_days if embargo_days is None else embargo_days
    if embargo < settings.features.label_window_days:
        log.warning("fold at %s cut with a %d-day embargo, shorter than the %d-day label window: "
                    "its training labels see the test window (label leakage)", origin, embargo,
                    settings.features.label_window_days)
    learn_end = pd.Timestamp(origin - timedelta(days=embargo))  # last learnable snapshot day
    validation_start = learn_end - pd.Timedelta(days=cfg.validation_days - 1)
    test_end = pd.Timestamp(origin + timedelta(days=cfg.test_days - 1))
    parts = {
        "train": labelled[day < validation_start],
        "validation": labelled[(day >= validation_start) & (day <= learn_end)],
        "test": labelled[(day >= pd.Timestamp(origin)) & (day <= test_end)],
    }
    for name, part in parts.items():
        if part.empty:
            raise DataError(
                f"the {name} part of the fold at {origin} is empty (labelled snapshots "
                f"{day.min().date()}..{day.max().date()}; embargo {embargo} days, validation "
                f"{cfg.validation_days} days, test {cfg.test_days} days); provide more history "
                "or reduce training.backtest.folds / training.split")
    split = Split(**{k: v.reset_index(drop=True) for k, v in parts.items()},
                  train_start=day.min().date(), validation_start=validation_start.date(),
                  test_start=origin, test_end=test_end.date(), embargo_days=embargo)
    log.info("fold at %s: %s", origin, split.summary())
    return split


def final_split(frame: pd.DataFrame, settings: Settings) -> Split:
    """The refit on all matured labels: the last `validation_days` of labelled snapshots
    validate (early stopping, calibration, threshold), everything before trains."""
    labelled = matured(frame, settings)
    day = snapshot_dates(labelled)
    last = day.max()
    validation_start = last - pd.Timedelta(days=settings.training.split.validation_days - 1)
    train, validation = labelled[day < validation_start], labelled[day >= validation_start]
    if train.empty or validation.empty:
        raise DataError(
            f"too little labelled history to refit: snapshots {day.min().date()}..{last.date()}, "
            f"validation_days {settings.training.split.validation_days}")
    origin = (last + pd.Timedelta(days=1)).date()
    return Split(train=train.reset_index(drop=True), validation=validation.reset_index(drop=True),
                 test=labelled.iloc[0:0], train_start=day.min().date(),
                 validation_start=validation_start.date(), test_start=origin, test_end=origin,
                 embargo_days=settings.embargo_days)


def backtest_origins(frame: pd.DataFrame, settings: Settings) -> list[date]:
    """The rolling origins, oldest first: the last test window ends at the last matured
    snapshot, earlier ones step back `backtest.step_days`."""
    cfg = settings.training
    day = snapshot_dates(matured(frame, settings))
    last_origin = (day.max() - pd.Timedelta(days=cfg.split.test_days - 1)).date()
    return [last_origin - timedelta(days=cfg.backtest.step_days * k)
            for k in reversed(range(cfg.backtest.folds))]


def split_by_time(frame: pd.DataFrame, settings: Settings) -> Split:
    """The latest backtest fold: test on the last matured window, validate and train on what
    had matured by its start."""
    return cut_at(frame, backtest_origins(frame, settings)[-1], settings)


@dataclass
class CalibrationReport:
    """Validation Brier and log loss of each candidate (cross-fitted on validation) and the
    one kept."""

    method: str  # "none", "isotonic" or "sigmoid"
    brier: dict[str, float]
    requested: str
    logloss: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "requested": self.requested, "brier": dict(self.brier),
                "logloss": dict(self.logloss)}


def rules_score(frame: pd.DataFrame) -> np.ndarray:
    """The rules score (engagement_score, 0–100); missing counts as 0."""
    return pd.to_numeric(frame[RULES_COLUMN], errors="coerce").fillna(0.0).to_numpy(float)


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(brier_score_loss(y, np.clip(p, 0.0, 1.0)))


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1]))


def choose_calibration(margin: np.ndarray, y: np.ndarray, requested: str,
                       seed: int, isotonic_min_gain: float = 0.0,
                       ) -> tuple[Calibrator | None, CalibrationReport]:
    """Pick and fit the calibrator on validation (margin, label) pairs.

    Each candidate's Brier (and log loss) is measured out-of-fold (5-fold cross-fitting on
    validation), because an isotonic fit scored on its own data always looks better than it is.
    With `auto` the candidate with the lowest Brier is kept if it beats the uncalibrated model,
    except that isotonic (whose steps give many leads one score, so the top of the list cannot
    be ranked) must beat the best tie-free option by `isotonic_min_gain` of its Brier; the
    final calibrator is then refitted on all of validation.
    """
    margin = np.asarray(margin, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    brier = {"none": _brier(y, expit(margin))}
    logloss = {"none": _logloss(y, expit(margin))}
    candidates = ["isotonic", "sigmoid"] if requested == "auto" else (
        [] if requested == "none" else [requested])
    folds = min(CALIBRATION_FOLDS, int(y.sum()), int(len(y) - y.sum()))
    for method in candidates:
        if folds < 2:
            brier[method] = logloss[method] = float("nan")
            continue
        oof = np.empty_like(margin)
        kfold = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for fit_idx, eval_idx in kfold.split(margin, y):
            cal = Calibrator.fit(method, margin[fit_idx], y[fit_idx])  # type: ignore[arg-type]
            oof[eval_idx] = cal.transform(margin[eval_idx])
        brier[method] = _brier(y, oof)
        logloss[method] = _logloss(y, oof)
    if requested == "auto":
        scored = {m: b for m, b in brier.items() if not np.isnan(b)}
        smooth = {m: b for m, b in scored.items() if m != "isotonic"}
        chosen = min(smooth, key=lambda m: (smooth[m], m != "none"))
        if scored.get("isotonic", np.inf) < smooth[chosen] * (1 - isotonic_min_gain):
            chosen = "isotonic"
    else:
        chosen = requested
    calibrator = None if chosen == "none" else Calibrator.fit(chosen, margin, y)  # type: ignore[arg-type]
    report = CalibrationReport(method=chosen, brier=brier, requested=requested, logloss=logloss)
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


def xgboost_params(settings: Settings, x: XGBoostParams | None = None) -> dict[str, Any]:
    """The booster parameters derived from settings.training (or from `x`, its xgboost
    settings with a search entry's overrides)."""
    x = x or settings.training.xgboost
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


def _held_out_logloss(calibration: CalibrationReport, y: np.ndarray, p: np.ndarray) -> float:
    """Validation log loss of the kept calibration, cross-fitted: a calibrator scored on the rows
    it was fitted on (isotonic most) looks better than it is and would win a search unfairly.
    In-sample only where no cross-fitted figure exists (too few rows of a class)."""
    held_out = calibration.logloss.get(calibration.method, float("nan"))
    return held_out if np.isfinite(held_out) else _logloss(y, p)


@dataclass
class FitResult:
    """One fitted scorer and what its validation said."""

    scorer: LeadScorer
    family: str
    calibration: CalibrationReport
    params: dict[str, Any]
    validation_auc: float
    validation_logloss: float  # of the kept calibration, cross-fitted on validation
    best_iteration: int | None = None
    seconds: float = 0.0
    split_summary: dict[str, Any] = field(default_factory=dict)


def _family_features(family: str, features: list[str]) -> list[str]:
    # The rules family is the sales team's engagement rule, recalibrated: one input.
    return [RULES_COLUMN] if family == "rules" else list(features)


def mask_optional_fields(frame: pd.DataFrame, fields: list[str], share: float,
                         seed: int) -> pd.DataFrame:
    """A copy where each of `fields` is blanked at random in `share` of the rows.

    The request model learns from it what "not given" means: a web form often leaves the
    country, licence or budget empty, and a model that never saw a missing value would let its
    default branches (not the data) decide such a lead's score.
    """
    if share <= 0 or not fields:
        return frame
    rng = np.random.default_rng([seed, _MASKING_STREAM])
    out = frame.copy()
    for name in fields:
        out.loc[rng.random(len(out)) < share, name] = None
    return out


_SAMPLING_STREAM, _MASKING_STREAM = 1, 2


def sample_negatives(frame: pd.DataFrame, share: float,
                     seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """All positives and `share` of the negatives (seeded), with weights 1/share on the kept
    negatives, so the weighted likelihood is the full one's in expectation (case-control
    sampling): a fraction of the fitting time at a base rate of a few percent."""
    y = frame[LABEL].astype(int).to_numpy()
    if share >= 1:
        return frame, np.ones(len(frame))
    # Its own random stream: draws shared with the request fields' masking would keep exactly
    # the masked rows.
    keep = (y == 1) | (np.random.default_rng([seed, _SAMPLING_STREAM]).random(len(frame)) < share)
    weight = np.where(y[keep] == 1, 1.0, 1.0 / share)
    return frame[keep], weight


def fit_scorer(split: Split, settings: Settings, *, family: str = "xgboost",
               features: list[str] | None = None,
               xgboost_overrides: dict[str, Any] | None = None) -> FitResult:
    """Fit one family on split.train; early stopping, calibration and the decision threshold
    on split.validation. Deterministic for the same split and settings.

    Args:
        family: xgboost, logistic or rules (engagement_score alone).
        features: the input columns (default: the full feature list).
        xgboost_overrides: parameters that replace training.xgboost's (the tuning budget).

    Raises:
        DataError: training has fewer positives/negatives than the configured minimum.
    """
    _check_class_counts(split.train, settings)
    cfg = settings.training
    started = time.perf_counter()
    names = _family_features(family, features or feature_columns(
        cfg.categorical_features, settings.vocabulary.numeric_features))
    categorical = [c for c in cfg.categorical_features if c in names]
    scorer = LeadScorer(feature_names=names, categorical_features=categorical,
                        categories=_categories(split.train, categorical), family=family)
    train, weight = sample_negatives(split.train, cfg.negative_sampling, cfg.seed)
    y_train = train[LABEL].astype(int).to_numpy()
    y_val = split.validation[LABEL].astype(int).to_numpy()
    monotone = settings.training.monotone(names)
    best_iteration = None
    if family == "xgboost":
        # a search entry goes through the settings' own validation and parameter names
        x = cfg.xgboost.with_overrides(xgboost_overrides or {})
        params = xgboost_params(settings, x)
        params["monotone_constraints"] = "(" + ",".join(map(str, monotone)) + ")"
        rounds, stopping = x.n_estimators, x.early_stopping_rounds
        dtrain = scorer.dmatrix(train)
        dtrain.set_label(y_train)
        dtrain.set_weight(weight)
        dval = scorer.dmatrix(split.validation)
        dval.set_label(y_val)
        booster = xgb.train(params, dtrain, num_boost_round=rounds,
                            evals=[(dval, "validation")], early_stopping_rounds=stopping,
                            verbose_eval=False)
        best_iteration = int(booster.best_iteration)
        # Keep only the trees up to the best round, so every consumer (inplace_predict,
        # contributions, the saved file) sees the same model.
        scorer.booster = booster[: best_iteration + 1]
        params = {**params, "num_boost_round": rounds, "early_stopping_rounds": stopping}
    else:
        x = scorer.matrix(train)
        scorer.linear = LinearModel.fit(
            x, y_train, categorical=[n in scorer.categories for n in names],
            n_levels=[len(scorer.categories.get(n, [])) for n in names], monotone=monotone,
            l2=cfg.logistic.l2, sample_weight=weight)
        params = {"l2": cfg.logistic.l2}
    val_margin = scorer.margin(split.validation)
    scorer.calibrator, calibration = choose_calibration(val_margin, y_val, cfg.calibration,
                                                        cfg.seed, cfg.isotonic_min_gain)
    val_proba = scorer.probability(val_margin)
    scorer.decision_threshold = max_f1_threshold(y_val, val_proba)
    two = len(np.unique(y_val)) == 2
    summary = split.summary()
    scorer.metadata = {
        **summary, "family": family, "best_iteration": best_iteration,
        "calibration": calibration.method, "decision_threshold_rule": "max F1 on validation",
        "config_hash": settings.config_hash(), "xgboost_version": xgb.__version__,
    }
    return FitResult(
        scorer=scorer, family=family, calibration=calibration,
        params={**params, "family": family, "calibration": cfg.calibration},
        validation_auc=float(roc_auc_score(y_val, val_proba)) if two else float("nan"),
        validation_logloss=_held_out_logloss(calibration, y_val, val_proba),
        best_iteration=best_iteration, seconds=time.perf_counter() - started,
        split_summary=summary)


def fit_tuned(split: Split, settings: Settings, *, family: str,
              features: list[str] | None = None,
              search: list[dict[str, Any]] | None = None) -> FitResult:
    """`fit_scorer`, with XGBoost's small search decided by validation log loss (cross-fitted
    where a calibrator is fitted): the test window never picks a parameter.

    Args:
        search: overrides of training.xgboost to try (default: training.xgboost_search; the
            request model passes training.request_xgboost_search). The first wins a tie.
    """
    if family != "xgboost":
        return fit_scorer(split, settings, family=family, features=features)
    search = settings.training.xgboost_search if search is None else search
    fits = [fit_scorer(split, settings, family=family, features=features,
                       xgboost_overrides=overrides)
            for overrides in search or [{}]]
    return min(fits, key=lambda f: f.validation_logloss)
