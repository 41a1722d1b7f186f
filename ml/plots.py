"""Evaluation plots as PNG files (ROC, PR, calibration, gains/lift, feature importance).

Matplotlib runs on the Agg backend through its object API (no pyplot state, no display), so
plotting works in workers and CI without a screen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.evaluate import Evaluation
from ml.model import LeadScorer

if TYPE_CHECKING:
    from ml.backtest import BacktestReport

log = logging.getLogger(__name__)


def _figure(size: tuple[float, float] = (5.5, 4.5)) -> Figure:
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_roc(evaluation: Evaluation, path: Path) -> Path:
    """ROC curves of the model and the baselines."""
    fig = _figure()
    ax = fig.add_subplot()
    curves = {"model": evaluation.scores, **evaluation.baseline_scores}
    for name, score in curves.items():
        if len(np.unique(evaluation.y_true)) < 2:
            break
        fpr, tpr, _ = roc_curve(evaluation.y_true, score)
        auc = evaluation.auc_roc if name == "model" else evaluation.baselines.get(name, np.nan)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", lw=2 if name == "model" else 1)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(evaluation: Evaluation, path: Path) -> Path:
    """Precision–recall curve with the base rate as reference."""
    fig = _figure()
    ax = fig.add_subplot()
    if len(np.unique(evaluation.y_true)) == 2:
        precision, recall, _ = precision_recall_curve(evaluation.y_true, evaluation.scores)
        ax.plot(recall, precision, lw=2, label=f"model (PR-AUC {evaluation.pr_auc:.3f})")
    base = evaluation.positives / max(evaluation.n, 1)
    ax.axhline(base, ls="--", c="grey", lw=0.8, label=f"base rate {base:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_calibration(evaluation: Evaluation, path: Path) -> Path:
    """Observed conversion rate against mean predicted probability per bin."""
    fig = _figure()
    ax = fig.add_subplot()
    pred = [b["mean_predicted"] for b in evaluation.calibration]
    obs = [b["observed_rate"] for b in evaluation.calibration]
    top = max([*pred, *obs, 0.05]) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8, label="perfect")
    ax.plot(pred, obs, marker="o", label=f"model (ECE {evaluation.ece:.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate",
           title="Calibration (equal-count bins)", xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_gains(evaluation: Evaluation, path: Path) -> Path:
    """Lift per decile (bars) and cumulative gain (line)."""
    fig = _figure((8, 4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    deciles = [g["decile"] for g in evaluation.gains]
    left.bar(deciles, [g["lift"] for g in evaluation.gains])
    left.axhline(1.0, ls="--", c="grey", lw=0.8)
    left.set(xlabel="decile (1 = highest scores)", ylabel="lift", title="Lift by decile")
    share = [0.0, *(d / len(deciles) for d in deciles)]
    right.plot(share, [0.0, *(g["cumulative_gain"] for g in evaluation.gains)], marker="o",
               label="model")
    right.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="random")
    right.set(xlabel="share of leads contacted", ylabel="share of conversions",
              title="Cumulative gains")
    right.legend(loc="lower right")
    return _save(fig, path)


def plot_importance(scorer: LeadScorer, path: Path, top: int = 20) -> Path:
    """The `top` features by total gain."""
    importance = list(scorer.feature_importance("total_gain").items())[:top][::-1]
    kind = "total gain" if scorer.linear is None else "|standardised coefficient|"
    fig = _figure((6, max(3.0, 0.28 * len(importance) + 1)))
    ax = fig.add_subplot()
    ax.barh([name for name, _ in importance], [value for _, value in importance])
    ax.set(xlabel=kind, title=f"Feature importance ({scorer.family})")
    return _save(fig, path)


def plot_backtest(backtest: BacktestReport, path: Path) -> Path:
    """AUC per backtest origin for every family (full and request models) and the oracle."""
    table = backtest.table()
    fig = _figure((6.5, 4.2))
    ax = fig.add_subplot()
    for (family, model), part in table.groupby(["family", "model"], sort=False):
        ax.plot(part["origin"], part["auc"], marker="o", lw=1.5 if model == "full" else 1,
                ls="-" if model == "full" else "--", label=f"{family} ({model})")
    oracle = table.drop_duplicates("origin")
    if oracle["oracle_auc"].notna().any():
        ax.plot(oracle["origin"], oracle["oracle_auc"], c="grey", ls=":", label="oracle")
    ax.set(xlabel="fold origin (first day of its test window)", ylabel="AUC",
           title=f"Rolling-origin backtest (embargo {backtest.embargo_days} days)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_all(evaluation: Evaluation, scorer: LeadScorer, folder: Path) -> dict[str, Path]:
    """Write every plot into `folder` (created if needed); returns name → PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "roc": plot_roc(evaluation, folder / "roc.png"),
        "pr": plot_pr(evaluation, folder / "pr.png"),
        "calibration": plot_calibration(evaluation, folder / "calibration.png"),
        "gains": plot_gains(evaluation, folder / "gains_lift.png"),
        "importance": plot_importance(scorer, folder / "feature_importance.png"),
    }
    log.info("wrote %d plots to %s", len(paths), folder)
    return paths
