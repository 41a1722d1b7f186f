"""Evaluation of a scorer on the held-out (test) split.

Definitions, so the numbers mean the same everywhere:
- Ranking is by calibrated probability, descending; ties are broken by row order (stable sort).
- Precision@K / Recall@K: among the K top-ranked rows. K for the fraction is
  ceil(top_k_fraction × n); for the count it is min(top_k_count, n).
- Decision threshold: with `decision_threshold: max_f1` it is the cut that maximised F1 on the
  *validation* split, chosen at training time and saved with the model
  (`LeadScorer.decision_threshold`), so the test set never tunes it. A number in the settings
  overrides it. A row is flagged when probability ≥ threshold.
- Calibration curve: equal-count bins of the probability (a base rate of a few percent leaves
  equal-width bins above 0.5 nearly empty); ECE is the row-weighted mean |predicted − observed|.
- Gains/lift by decile: decile 1 is the top 10 % of scores; lift = decile rate / base rate.
- Baselines: AUC of logistic regression and of the rules score on the same rows;
  `auc_lift_vs_<name>` = model AUC − baseline AUC (AUC points).
- Oracle (generated data only): AUC of the true probability on the same rows, and the ratio
  model AUC / oracle AUC (1.0 = as good as knowing the truth).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, log_loss

from ml.config import Settings
from ml.errors import DataError
from ml.model import LABEL, LeadScorer
from ml.train import rules_score

log = logging.getLogger(__name__)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present.

    The Mann-Whitney form on average ranks: the same value as scikit-learn's `roc_auc_score`
    (ties count one half), at a fraction of its cost on the backtest's ~500 AUCs per run
    (folds × families × segments), where the input validation dominated.
    """
    positive = np.asarray(y) == 1
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    score = np.asarray(score, dtype=float)
    if np.isnan(score).any():
        raise DataError("cannot compute an AUC: the scores contain NaN")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(auc: float, n_pos: int, n_neg: int, alpha: float = 0.05
                 ) -> tuple[float | None, float | None]:
    """(1 - alpha) confidence interval of an AUC by Hanley & McNeil (1982), from the AUC and the
    class counts alone; (None, None) when a class is empty."""
    if n_pos <= 0 or n_neg <= 0 or math.isnan(auc):
        return None, None
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg)
    half = float(norm.ppf(1 - alpha / 2) * math.sqrt(max(var, 0.0)))
    return max(0.0, auc - half), min(1.0, auc + half)


def top_k(y: np.ndarray, score: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall among the k highest scores (stable ranking)."""
    k = max(0, min(int(k), len(y)))
    if k == 0:
        return float("nan"), float("nan")
    order = np.argsort(-score, kind="stable")[:k]
    hits = float(y[order].sum())
    positives = float(y.sum())
    return hits / k, (hits / positives if positives else float("nan"))


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and share flagged for score ≥ threshold."""
    flagged = score >= threshold
    tp = float((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if precision and recall and not math.isnan(precision + recall) else 0.0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "flagged_fraction": float(flagged.mean()) if len(y) else float("nan")}


def calibration_table(y: np.ndarray, score: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Equal-count bins of the score: n, mean predicted, observed rate."""
    order = np.argsort(score, kind="stable")
    rows = []
    for i, idx in enumerate(np.array_split(order, min(bins, len(y)))):
        if len(idx) == 0:
            continue
        rows.append({"bin": i + 1, "n": int(len(idx)), "mean_predicted": float(score[idx].mean()),
                     "observed_rate": float(y[idx].mean()),
                     "min_score": float(score[idx].min()), "max_score": float(score[idx].max())})
    return rows


def gains_table(y: np.ndarray, score: np.ndarray, groups: int = 10) -> list[dict[str, float]]:
    """Gains and lift by decile (decile 1 = highest scores)."""
    order = np.argsort(-score, kind="stable")
    base = y.mean() if len(y) else float("nan")
    total = y.sum()
    rows, cum_pos, cum_n = [], 0.0, 0
    for i, idx in enumerate(np.array_split(order, groups)):
        pos = float(y[idx].sum())
        cum_pos, cum_n = cum_pos + pos, cum_n + len(idx)
        rate = pos / len(idx) if len(idx) else float("nan")
        rows.append({
            "decile": i + 1, "n": int(len(idx)), "positives": int(pos), "rate": rate,
            "lift": rate / base if base else float("nan"),
            "cumulative_gain": cum_pos / total if total else float("nan"),
            "cumulative_lift": (cum_pos / cum_n) / base if base and cum_n else float("nan"),
        })
    return rows


def segment_table(frame: pd.DataFrame, y: np.ndarray, score: np.ndarray,
                  column: str) -> list[dict[str, Any]]:
    """AUC per level of `column`, with n and positives (NaN AUC if one class only)."""
    levels = frame[column].astype(object).where(frame[column].notna(), "(missing)").to_numpy()
    rows = []
    for level in sorted(set(levels), key=str):
        mask = levels == level
        rows.append({"segment": column, "level": str(level), "n": int(mask.sum()),
                     "positives": int(y[mask].sum()), "auc": _auc(y[mask], score[mask])})
    return rows


@dataclass
class Evaluation:
    """Everything measured on one evaluation frame. Arrays are kept for plotting only."""

    n: int
    positives: int
    auc_roc: float
    pr_auc: float
    brier: float
    log_loss: float
    ece: float
    top_k: dict[str, dict[str, float]]  # "top10pct" / "top500" -> k, precision, recall
    threshold: float
    threshold_source: str
    at_threshold: dict[str, float]
    calibration: list[dict[str, float]]
    gains: list[dict[str, float]]
    segments: list[dict[str, Any]]
    baselines: dict[str, float]  # name -> AUC on the same rows
    oracle_auc: float | None = None
    y_true: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    baseline_scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def metrics(self) -> dict[str, float]:
        """Flat name → float, for mlflow.log_metrics (NaN values are left out)."""
        out: dict[str, float] = {
            "n_rows": float(self.n), "n_positives": float(self.positives),
            "base_rate": self.positives / self.n if self.n else float("nan"),
            "auc_roc": self.auc_roc, "pr_auc": self.pr_auc, "brier": self.brier,
            "log_loss": self.log_loss, "ece": self.ece, "threshold": self.threshold,
        }
        for name, v in self.top_k.items():
            out[f"precision_at_{name}"] = v["precision"]
            out[f"recall_at_{name}"] = v["recall"]
        for name, v in self.at_threshold.items():
            out[f"{name}_at_threshold"] = v
        for name, auc in self.baselines.items():
            out[f"baseline_{name}_auc"] = auc
            out[f"auc_lift_vs_{name}"] = self.auc_roc - auc
        if self.gains:
            out["lift_top_decile"] = self.gains[0]["lift"]
        if self.oracle_auc is not None:
            out["oracle_auc"] = self.oracle_auc
            out["auc_ratio_to_oracle"] = (self.auc_roc / self.oracle_auc
                                          if self.oracle_auc else float("nan"))
        return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(v)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metrics plus the tables (NaN becomes null)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return clean({
            "metrics": self.metrics(), "threshold_source": self.threshold_source,
            "top_k": self.top_k, "at_threshold": self.at_threshold,
            "calibration": self.calibration, "gains": self.gains, "segments": self.segments,
            "baselines": self.baselines, "oracle_auc": self.oracle_auc,
        })


def _threshold(scorer: LeadScorer, settings: Settings) -> tuple[float, str]:
    configured = settings.evaluation.decision_threshold
    if configured != "max_f1":
        return float(configured), "configured (evaluation.decision_threshold)"
    if scorer.decision_threshold is not None:
        return float(scorer.decision_threshold), "max F1 on validation (saved with the model)"
    # A scorer built outside train_model: fall back to 0.5 rather than tune on the test rows.
    log.warning("the scorer has no validation threshold; using 0.5")
    return 0.5, "default 0.5 (the scorer has no validation threshold)"


def evaluate(scorer: LeadScorer, test_frame: pd.DataFrame, settings: Settings,
             truth_probability: np.ndarray | None = None,
             baselines: dict[str, LeadScorer] | None = None) -> Evaluation:
    """Measure the scorer on `test_frame` (features + `converted_within_window`).

    Args:
        truth_probability: the generator's true probability per row (oracle), if known.
        baselines: other scorers to report on the same rows, by name; the rules score is
            always evaluated when the frame has `engagement_score`.

    Raises:
        DataError: the label column is missing or the frame is empty.
    """
    if LABEL not in test_frame.columns:
        raise DataError(f"the evaluation frame has no label column `{LABEL}`")
    if test_frame.empty:
        raise DataError("the evaluation frame is empty")
    p = scorer.predict_proba(test_frame)
    threshold, source = _threshold(scorer, settings)
    baseline_scores: dict[str, np.ndarray] = {
        name: other.predict_proba(test_frame) for name, other in (baselines or {}).items()}
    return evaluate_predictions(test_frame, p, settings, threshold=threshold,
                                threshold_source=source, truth_probability=truth_probability,
                                baseline_scores=baseline_scores)


def evaluate_predictions(test_frame: pd.DataFrame, p: np.ndarray, settings: Settings, *,
                         threshold: float, threshold_source: str,
                         truth_probability: np.ndarray | None = None,
                         baseline_scores: dict[str, np.ndarray] | None = None) -> Evaluation:
    """`evaluate` for given probabilities (e.g. a backtest's pooled out-of-fold predictions)."""
    cfg = settings.evaluation
    y = test_frame[LABEL].astype(int).to_numpy()
    p = np.asarray(p, dtype=float)
    n = len(y)

    k_fraction = max(1, math.ceil(cfg.top_k_fraction * n))
    k_count = min(cfg.top_k_count, n)
    tops = {}
    for name, k in ((f"top{cfg.top_k_fraction * 100:g}pct", k_fraction),
                    (f"top{cfg.top_k_count}", k_count)):
        precision, recall = top_k(y, p, k)
        tops[name] = {"k": k, "precision": precision, "recall": recall}

    calibration = calibration_table(y, p, cfg.calibration_bins)
    ece = sum(b["n"] * abs(b["mean_predicted"] - b["observed_rate"]) for b in calibration) / n

    baseline_scores = dict(baseline_scores or {})
    if "engagement_score" in test_frame.columns and "rules" not in baseline_scores:
        baseline_scores["rules"] = rules_score(test_frame)

    segments = [row for column in cfg.segments if column in test_frame.columns
                for row in segment_table(test_frame, y, p, column)]
    oracle = None
    if truth_probability is not None:
        truth = np.asarray(truth_probability, dtype=float)
        if len(truth) != n:
            raise DataError(f"truth_probability has {len(truth)} values for {n} rows")
        oracle = _auc(y, truth)

    two_classes = len(np.unique(y)) == 2
    evaluation = Evaluation(
        n=n, positives=int(y.sum()), auc_roc=_auc(y, p),
        pr_auc=float(average_precision_score(y, p)) if two_classes else float("nan"),
        brier=float(np.mean((p - y) ** 2)),
        log_loss=float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        ece=float(ece), top_k=tops, threshold=threshold, threshold_source=threshold_source,
        at_threshold=at_threshold(y, p, threshold), calibration=calibration,
        gains=gains_table(y, p), segments=segments,
        baselines={name: _auc(y, s) for name, s in baseline_scores.items()},
        oracle_auc=oracle, y_true=y, scores=p, baseline_scores=baseline_scores,
    )
    log.info("evaluation on %d rows: AUC %.4f, PR-AUC %.4f, Brier %.4f", n, evaluation.auc_roc,
             evaluation.pr_auc, evaluation.brier)
    return evaluation
