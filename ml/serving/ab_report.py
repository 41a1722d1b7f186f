"""A/B (and canary) report: the prediction log joined with conversions, per variant.

Each lead counts once, at its first served prediction (assignment is sticky, so a lead stays in
one variant). Its label is whether it converted within `features.label_window_days` after that
prediction; only predictions whose window has passed by `as_of` count (matured), and a lead that
had converted before it was scored is left out. Per variant the report gives the conversion rate
(overall and by tier) and the AUC of the served score with a 95 % confidence interval
(Hanley–McNeil); across variants a two-sided two-proportion z-test at `serving.ab.alpha` with a
verdict, and the leads per variant needed to detect `serving.ab.min_effect` at `serving.ab.power`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ml.config import Settings
from ml.errors import DataError
from ml.evaluate import auc_interval
from ml.serving.routing import CHALLENGER, CHAMPION


@dataclass
class VariantResult:
    variant: str
    model_versions: list[str]
    leads: int
    conversions: int
    conversion_rate: float | None
    auc: float | None
    auc_ci: tuple[float, float] | None
    by_tier: dict[str, dict[str, float | int | None]] = field(default_factory=dict)


@dataclass
class ABReport:
    as_of: str
    label_window_days: int
    alpha: float
    leads_logged: int
    leads_matured: int
    variants: dict[str, VariantResult]
    difference: float | None  # challenger rate - champion rate
    z: float | None
    p_value: float | None
    significant: bool
    verdict: str
    needed_per_variant: int | None  # to detect serving.ab.min_effect at serving.ab.power
    min_effect: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_conversions(settings: Settings, path: Path | None = None) -> pd.DataFrame:
    """lead_id, converted_at (UTC) from a CSV or Parquet file (default: the `lead_conversions`
    mart, or the landing zone's conversions.csv before the first build)."""
    mart = settings.paths.marts_dir / "lead_conversions.parquet"
    path = path or (mart if mart.is_file() else settings.paths.raw_dir / "conversions.csv")
    if not path.is_file():
        raise DataError(f"conversions file not found: {path}; pass --conversions")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = {"lead_id", "converted_at"} - set(frame.columns)
    if missing:
        raise DataError(f"{path} lacks column(s) {sorted(missing)}")
    frame = frame.loc[frame["converted_at"].notna(), ["lead_id", "converted_at"]].copy()
    frame["lead_id"] = frame["lead_id"].astype(str)
    frame["converted_at"] = pd.to_datetime(frame["converted_at"], utc=True, format="mixed")
    return frame


def auc_with_ci(y: np.ndarray, score: np.ndarray, alpha: float = 0.05
                ) -> tuple[float | None, tuple[float, float] | None]:
    """AUC and its (1 - alpha) confidence interval by Hanley & McNeil (1982)."""
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return None, None
    auc = float(roc_auc_score(y, score))
    low, high = auc_interval(auc, n_pos, n_neg, alpha)
    return auc, (low, high)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """z and two-sided p-value of H0: p1 == p2 (pooled standard error)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return float(z), float(2 * norm.sf(abs(z)))


def sample_size(p1: float, effect: float, alpha: float, power: float) -> int:
    """Leads per variant for a two-sided two-proportion test to detect p1 → p1 + effect."""
    p2 = min(max(p1 + effect, 1e-9), 1 - 1e-9)
    p1 = min(max(p1, 1e-9), 1 - 1e-9)
    pbar = (p1 + p2) / 2
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    n = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
         ) ** 2 / (p2 - p1) ** 2
    return int(math.ceil(n))


def ab_report(settings: Settings, log: pd.DataFrame, conversions: pd.DataFrame,
              as_of: datetime | None = None) -> ABReport:
    """Compare the variants of the prediction log on matured conversions (see module doc).

    Args:
        log: prediction-log rows (ml.serving.prediction_log.read_log); logged_at naive UTC.
        conversions: lead_id, converted_at (load_conversions).
        as_of: labels known up to this instant (default now).
    """
    ab = settings.serving.ab
    window = timedelta(days=settings.features.label_window_days)
    as_of = as_of or datetime.now(UTC)
    as_of_ts = pd.Timestamp(as_of).tz_localize("UTC") if pd.Timestamp(as_of).tzinfo is None \
        else pd.Timestamp(as_of).tz_convert("UTC")
    served = log[(log["served"].astype(bool)) & (log["status"] == "ok")].copy()
    served["logged_at"] = pd.to_datetime(served["logged_at"], utc=True)
    first = served.sort_values("logged_at").drop_duplicates("lead_id", keep="first")
    conv = conversions.drop_duplicates("lead_id").set_index("lead_id")["converted_at"]
    first["converted_at"] = first["lead_id"].map(conv)
    before = first["converted_at"].notna() & (first["converted_at"] <= first["logged_at"])
    matured = first[~before & (first["logged_at"] + window <= as_of_ts)].copy()
    matured["y"] = (matured["converted_at"].notna()
                    & (matured["converted_at"] <= matured["logged_at"] + window)).astype(int)

    variants: dict[str, VariantResult] = {}
    for variant in (CHAMPION, CHALLENGER):
        part = matured[matured["variant"] == variant]
        n, x = len(part), int(part["y"].sum())
        auc, ci = auc_with_ci(part["y"].to_numpy(), part["score"].to_numpy(), ab.alpha)
        by_tier = {
            str(t): {"leads": int(len(g)), "conversions": int(g["y"].sum()),
                     "conversion_rate": float(g["y"].mean()) if len(g) else None}
            for t, g in part.groupby("tier")
        }
        variants[variant] = VariantResult(
            variant, sorted(part["model_version"].astype(str).unique().tolist()), n, x,
            x / n if n else None, auc, ci, by_tier)

    a, b = variants[CHAMPION], variants[CHALLENGER]
    difference = z = p_value = None
    significant = False
    if a.leads and b.leads:
        z, p_value = two_proportion_test(a.conversions, a.leads, b.conversions, b.leads)
        difference = b.conversion_rate - a.conversion_rate
        significant = p_value < ab.alpha
        if significant:
            better = "challenger" if difference > 0 else "champion"
            verdict = (f"{better} converts better: {difference:+.4f} "
                       f"(p = {p_value:.4g} < alpha {ab.alpha})")
        else:
            verdict = (f"no significant difference: {difference:+.4f} "
                       f"(p = {p_value:.4g} ≥ alpha {ab.alpha})")
    else:
        verdict = "not enough matured leads in both variants to compare"
    base = a.conversion_rate if a.conversion_rate is not None else b.conversion_rate
    needed = sample_size(base, ab.min_effect, ab.alpha, ab.power) if base is not None else None
    return ABReport(
        as_of=as_of_ts.isoformat(), label_window_days=window.days, alpha=ab.alpha,
        leads_logged=int(len(first)), leads_matured=int(len(matured)), variants=variants,
        difference=difference, z=z, p_value=p_value, significant=significant, verdict=verdict,
        needed_per_variant=needed, min_effect=ab.min_effect,
    )
