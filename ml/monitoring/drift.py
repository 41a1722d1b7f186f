"""Data drift between a reference sample and a current one: PSI, and KS or chi-square judged
by an effect size; two populations (every open lead, and the recent intake).

PSI bins are fixed on the reference:
- numeric features: interior edges at the reference's deciles (`psi_bins` bins; linear
  interpolation as `np.quantile`, duplicate edges merged, so a feature with few distinct values
  gets fewer bins), right-closed bins with open outer ends so every current value lands somewhere,
  and missing values (NaN) as one more bin of their own;
- categorical features: the reference's categories (missing as a category of its own) plus one
  bin for categories the reference never saw.
An empty bin on either side is given a share of `EPSILON` (1e-4) inside the logarithm and the
difference, without renormalising: PSI stays finite, and a category that appears from nothing
(or a bin that empties) still adds a large, finite term — (0.05 − 1e-4)·ln(0.05 / 1e-4) ≈ 0.31
for a new category holding 5 % of current rows, which alone crosses the 0.2 threshold. PSI does
not grow with the sample size: its bins are deciles of the reference (no sparse bins), so with
no shift it tends to 0 as both samples grow (≈ (bins − 1)·(1/n_ref + 1/n_cur) of noise).

KS (numeric) compares the non-missing values; its p-value is the asymptotic two-sided one that
`scipy.stats.ks_2samp(method="asymp")` gives. Chi-square (categorical) tests the 2×k table of
counts over the PSI bins that are not empty on both sides. With a million rows both tests call
the smallest shift significant (a KS statistic of 0.03 has p ≈ 1e-300), so a test flags drift
only when its p-value is below the configured one AND its effect size reaches a minimum: the KS
statistic itself (the largest gap between the two CDFs), and for categoricals the total
variation distance ½·Σ|cur − ref| over the PSI bins (the share of rows that would have to change
category; for two categories it equals the KS statistic). Both effect sizes lie in [0, 1] and do
not depend on the sample sizes, unlike Cramér's V, which shrinks when one sample is much larger
than the other. Evidently's own defaults move from p-values to distances above 1,000 rows for
the same reason.

Two populations (`population_drift`):
- "open": every lead being scored against the reference (the champion's training rows);
- "recent_intake": the leads created in the last N days (`days_since_created < N`) against the
  reference rows of the same age, over every feature but the lead age itself. A change in what
  comes in (a new lead-source mix) shows here undiluted by the older open leads, weeks before it
  moves the open population. Its rows carry the feature name with a " (recent intake)" suffix,
  so the store, the alert and the retraining trigger name the population.

Speed (1M × 1M rows, 41 features, ≤ 10 s): integer-valued features — most of the mart's columns
are counts — are binned with `np.bincount` over their value range, which gives the exact
quantiles, bin shares and both CDFs (hence KS) in O(n); other numerics are sorted once and read
by `searchsorted`. Features are computed in a small thread pool (numpy releases the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ml.config import Settings

EPSILON = 1e-4
NEW_CATEGORY = "__new__"
MISSING = "__missing__"
# integer-valued features spanning at most this many values use the bincount path
MAX_INTEGER_RANGE = 1 << 21
OPEN, RECENT = "open", "recent_intake"
RECENT_SUFFIX = " (recent intake)"
AGE_COLUMN = "days_since_created"


@dataclass(frozen=True)
class FeatureDrift:
    """Drift figures of one feature; `drifted` is the PSI verdict that alerts use, `test_drifted`
    the test's (p-value below the configured one and effect size at least the minimum)."""

    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    psi_drifted: bool
    test_drifted: bool
    reference_rows: int = 0
    current_rows: int = 0
    missing_share: float = 0.0  # share of current rows missing (numeric) or missing/unseen (cat.)
    effect: str = ""  # "ks_statistic" | "tv_distance"
    effect_size: float = 0.0

    @property
    def drifted(self) -> bool:
        return self.psi_drifted


@dataclass(frozen=True)
class DriftThresholds:
    """The thresholds of a drift verdict (`monitoring.*` settings; defaults as shipped).

    psi: a feature drifts (alerts; retraining trigger) when its PSI exceeds this.
    ks_pvalue, chi2_pvalue, ks_min_statistic, chi2_min_distance: a test flags drift when its
        p-value is below the first AND its effect size (KS statistic, total variation distance)
        is at least the second.
    recent_psi: the PSI threshold of the recent-intake population.
    recent_days: the recent intake is the leads with days_since_created < this.
    recent_min_rows: a recent intake with fewer rows (current or reference) is not judged.
    """

    psi: float = 0.2
    ks_pvalue: float = 0.01
    chi2_pvalue: float = 0.01
    ks_min_statistic: float = 0.1
    chi2_min_distance: float = 0.1
    recent_psi: float = 0.1
    recent_days: int = 14
    recent_min_rows: int = 500
    bins: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftThresholds:
        cfg = settings.monitoring
        return cls(
            psi=cfg.psi_threshold,
            ks_pvalue=cfg.ks_pvalue,
            chi2_pvalue=cfg.chi2_pvalue,
            ks_min_statistic=cfg.ks_min_statistic,
            chi2_min_distance=cfg.chi2_min_distance,
            recent_psi=cfg.recent_intake_psi_threshold,
            recent_days=cfg.recent_intake_days,
            recent_min_rows=cfg.recent_intake_min_rows,
            bins=cfg.psi_bins,
        )


def psi_from_shares(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins:
    sum((cur − ref) · ln(cur / ref)) with empty bins counted as EPSILON."""
    ref = np.clip(np.asarray(reference, dtype=float), EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _quantile_positions(n: int, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For np.quantile's linear method: lower index, upper index and weight of each interior
    quantile 1/bins, 2/bins, … of n sorted values."""
    h = (n - 1) * np.linspace(0, 1, bins + 1)[1:-1]
    lo = np.floor(h).astype(np.int64)
    return lo, np.minimum(lo + 1, n - 1), h - lo


def numeric_bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior quantile edges of the reference's non-missing values (duplicates merged)."""
    values = np.sort(reference[~np.isnan(reference)])
    return _edges_from_sorted(values, bins)


def _edges_from_sorted(values: np.ndarray, bins: int) -> np.ndarray:
    if values.size == 0:
        return np.array([])
    lo, hi, w = _quantile_positions(values.size, bins)
    return np.unique(values[lo] * (1 - w) + values[hi] * w)


def numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares per bin: len(edges)+1 value bins (right-closed) and a last bin for missing."""
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / max(values.size, 1)


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided KS p-value, as scipy's ks_2samp(method="asymp")."""
    if n_reference == 0 or n_current == 0:
        return 1.0
    en = n_reference * n_current / (n_reference + n_current)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(
        series.dtype, pd.CategoricalDtype
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _integer_range(ref: np.ndarray, cur: np.ndarray) -> tuple[int, int] | None:
    """(min, max) when both non-missing arrays hold integers in a small range, else None."""
    if ref.size == 0 or cur.size == 0:
        return None
    low = min(ref.min(), cur.min())
    high = max(ref.max(), cur.max())
    if high - low > MAX_INTEGER_RANGE:
        return None
    if not (np.array_equal(ref, np.floor(ref)) and np.array_equal(cur, np.floor(cur))):
        return None
    return int(low), int(high)


def _numeric_integer(
    ref: np.ndarray, cur: np.ndarray, low: int, high: int, bins: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Bin counts (without missing) and the KS statistic from per-value counts."""
    size = high - low + 1
    ref_counts = np.bincount((ref - low).astype(np.int64), minlength=size)
    cur_counts = np.bincount((cur - low).astype(np.int64), minlength=size)
    ref_cum = np.cumsum(ref_counts)
    cur_cum = np.cumsum(cur_counts)
    statistic = float(np.max(np.abs(ref_cum / ref.size - cur_cum / cur.size)))
    # the k-th smallest reference value (0-based) is the first value whose cumulative count > k
    lo, hi, w = _quantile_positions(ref.size, bins)
    at = lambda k: np.searchsorted(ref_cum, k, side="right") + low  # noqa: E731
    edges = np.unique(at(lo) * (1 - w) + at(hi) * w)
    grid = np.arange(low, high + 1, dtype=np.float64)
    bin_of_value = np.searchsorted(edges, grid, side="left")
    n_bins = len(edges) + 1
    ref_bins = np.bincount(bin_of_value, weights=ref_counts, minlength=n_bins)
    cur_bins = np.bincount(bin_of_value, weights=cur_counts, minlength=n_bins)
    return ref_bins, cur_bins, statistic


def _numeric_sorted(
    ref: np.ndarray, cur: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Bin counts (without missing) and the KS statistic from the sorted samples."""
    ref_s, cur_s = np.sort(ref), np.sort(cur)
    edges = _edges_from_sorted(ref_s, bins)
    # counts of right-closed bins (e_{i-1}, e_i]: values ≤ edge, differenced
    ref_le = np.searchsorted(ref_s, edges, side="right")
    cur_le = np.searchsorted(cur_s, edges, side="right")
    ref_bins = np.diff(np.concatenate([[0], ref_le, [ref_s.size]])).astype(float)
    cur_bins = np.diff(np.concatenate([[0], cur_le, [cur_s.size]])).astype(float)
    if ref_s.size == 0 or cur_s.size == 0:
        return ref_bins, cur_bins, 0.0
    # the largest CDF gap is reached at a sample point; evaluate both CDFs at all of them
    points = np.concatenate([ref_s, cur_s])
    gap = (
        np.searchsorted(ref_s, points, side="right") / ref_s.size
        - np.searchsorted(cur_s, points, side="right") / cur_s.size
    )
    return ref_bins, cur_bins, float(np.max(np.abs(gap)))


def _numeric_drift(
    reference: pd.Series, current: pd.Series, bins: int
) -> tuple[float, float, float, int, int, float]:
    ref_all, cur_all = _as_float(reference), _as_float(current)
    ref_missing, cur_missing = np.isnan(ref_all), np.isnan(cur_all)
    ref, cur = ref_all[~ref_missing], cur_all[~cur_missing]
    span = _integer_range(ref, cur)
    if span is not None:
        ref_bins, cur_bins, statistic = _numeric_integer(ref, cur, *span, bins)
    else:
        ref_bins, cur_bins, statistic = _numeric_sorted(ref, cur, bins)
    ref_shares = np.append(ref_bins, ref_missing.sum()) / max(ref_all.size, 1)
    cur_shares = np.append(cur_bins, cur_missing.sum()) / max(cur_all.size, 1)
    psi = psi_from_shares(ref_shares, cur_shares)
    p_value = ks_pvalue(statistic, ref.size, cur.size) if ref.size and cur.size else 1.0
    missing_share = float(cur_missing.mean()) if cur_all.size else 0.0
    return psi, statistic, p_value, ref_all.size, cur_all.size, missing_share


def _category_counts(series: pd.Series) -> pd.Series:
    counts = series.value_counts(dropna=False)
    index = counts.index.astype(object)
    keys = [MISSING if pd.isna(k) else str(k) for k in index]
    return pd.Series(counts.to_numpy(), index=keys).groupby(level=0).sum()


def categorical_shares(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Shares over the reference's categories (sorted; missing as `__missing__`), plus one last
    bin for categories the reference never saw."""
    ref_counts_all = _category_counts(reference)
    cur_counts_all = _category_counts(current)
    categories = pd.Index(sorted(ref_counts_all[ref_counts_all > 0].index, key=str))
    ref_counts = ref_counts_all.reindex(categories, fill_value=0).to_numpy(float)
    cur_counts = cur_counts_all.reindex(categories, fill_value=0).to_numpy(float)
    unseen = float(cur_counts_all.drop(categories, errors="ignore").sum())
    ref_shares = np.append(ref_counts, 0.0) / max(len(reference), 1)
    cur_shares = np.append(cur_counts, unseen) / max(len(current), 1)
    return ref_shares, cur_shares


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors (bins empty on both sides dropped)."""
    observed = np.vstack([ref_counts, cur_counts])
    observed = observed[:, observed.sum(axis=0) > 0]
    if observed.shape[1] < 2 or (observed.sum(axis=1) == 0).any():
        return 0.0, 1.0
    statistic, p_value, _, _ = stats.chi2_contingency(observed, correction=False)
    return float(statistic), float(p_value)


def total_variation(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """½·Σ|current − reference| of two share vectors over the same bins, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(current_shares) - np.asarray(reference_shares)).sum())


def feature_drift(
    feature: str,
    reference: pd.Series,
    current: pd.Series,
    *,
    categorical: bool,
    bins: int = 10,
    psi_threshold: float = 0.2,
    p_value_threshold: float = 0.01,
    min_effect: float = 0.1,
) -> FeatureDrift:
    """PSI plus KS (numeric) or chi-square (categorical) for one feature.

    Args:
        p_value_threshold, min_effect: the test flags drift when its p-value is below the first
            and its effect size (KS statistic; total variation distance) is at least the second.
    """
    if categorical:
        ref_shares, cur_shares = categorical_shares(reference, current)
        psi = psi_from_shares(ref_shares, cur_shares)
        statistic, p_value = chi2_test(
            np.round(ref_shares * len(reference)), np.round(cur_shares * len(current))
        )
        n_ref, n_cur, test = len(reference), len(current), "chi2"
        missing_share = float(cur_shares[-1])
        effect, effect_size = "tv_distance", total_variation(ref_shares, cur_shares)
    else:
        psi, statistic, p_value, n_ref, n_cur, missing_share = _numeric_drift(
            reference, current, bins
        )
        test, effect, effect_size = "ks", "ks_statistic", float(statistic)
    return FeatureDrift(
        feature=feature,
        kind="categorical" if categorical else "numeric",
        psi=psi,
        test=test,
        statistic=float(statistic),
        p_value=float(p_value),
        psi_drifted=psi > psi_threshold,
        test_drifted=bool(p_value < p_value_threshold and effect_size >= min_effect),
        reference_rows=int(n_ref),
        current_rows=int(n_cur),
        missing_share=missing_share,
        effect=effect,
        effect_size=effect_size,
    )


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    *,
    bins: int = 10,
    psi_threshold: float = 0.2,
    p_value_threshold: float = 0.01,
    chi2_p_value_threshold: float | None = None,
    ks_min_statistic: float = 0.1,
    chi2_min_distance: float = 0.1,
    workers: int | None = None,
) -> pd.DataFrame:
    """Drift of every feature: one row per feature (FeatureDrift's fields), worst PSI first.

    Args:
        p_value_threshold: the KS test's (and chi-square's unless `chi2_p_value_threshold`).
        ks_min_statistic, chi2_min_distance: the effect sizes a test needs to flag drift.
        workers: threads (default: the CPU count, at most 8).
    """
    categorical = set(categorical)
    chi2_p = p_value_threshold if chi2_p_value_threshold is None else chi2_p_value_threshold

    def one(name: str) -> dict:
        is_cat = name in categorical
        return asdict(
            feature_drift(
                name,
                reference[name],
                current[name],
                categorical=is_cat,
                bins=bins,
                psi_threshold=psi_threshold,
                p_value_threshold=chi2_p if is_cat else p_value_threshold,
                min_effect=chi2_min_distance if is_cat else ks_min_statistic,
            )
        )

    workers = workers or min(8, os.cpu_count() or 1)
    # the slow categoricals first, so they do not straggle at the end of the pool
    ordered = sorted(features, key=lambda f: f not in categorical)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, ordered))
    frame = pd.DataFrame(rows, columns=[f for f in FeatureDrift.__dataclass_fields__])
    return frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)


@dataclass(frozen=True)
class Population:
    """One population a drift run compared: its rows on both sides, whether it was judged,
    and the PSI threshold it was judged by."""

    name: str  # OPEN | RECENT
    description: str
    reference_rows: int
    current_rows: int
    judged: bool
    psi_threshold: float
    note: str = ""


@dataclass
class PopulationDrift:
    """Drift of both populations: `frame` holds one row per feature and judged population
    (FeatureDrift's fields, `feature` the label — the name, plus RECENT_SUFFIX for the recent
    intake — `column` the plain name, `population`), worst PSI first."""

    frame: pd.DataFrame
    populations: list[Population]

    def drifted(self, population: str | None = None) -> list[str]:
        """Labels of the features whose PSI drifted (in one population, or in either)."""
        rows = self.frame[self.frame["psi_drifted"]]
        if population is not None:
            rows = rows[rows["population"] == population]
        return sorted(rows["feature"])

    def verdict(self) -> str:
        """One sentence per population: drift and where, or the largest PSI; or why not judged."""
        parts = []
        for pop in self.populations:
            if not pop.judged:
                parts.append(f"{pop.description}: not judged ({pop.note})")
                continue
            rows = self.frame[self.frame["population"] == pop.name]
            hit = rows[rows["psi_drifted"]]
            size = f"{pop.current_rows:,} vs {pop.reference_rows:,} reference rows"
            if len(hit):
                figures = ", ".join(f"{r.column} {r.psi:.3f}" for r in hit.itertuples())
                parts.append(
                    f"DRIFT in {pop.description} ({size}): PSI > {pop.psi_threshold:g} on {figures}"
                )
            elif len(rows):
                top = rows.iloc[0]
                parts.append(
                    f"no drift in {pop.description} ({size}): max PSI {top.psi:.3f} "
                    f"({top.column}) ≤ {pop.psi_threshold:g}"
                )
        return "; ".join(parts)


def recent_intake_features(features: Sequence[str]) -> list[str]:
    """The features compared on the recent intake: every model feature but the lead age, which
    the population's definition fixes."""
    return [f for f in features if f != AGE_COLUMN]


def recent_rows(frame: pd.DataFrame, days: int) -> pd.DataFrame:
    """The rows of leads created less than `days` days before their snapshot."""
    age = pd.to_numeric(frame[AGE_COLUMN], errors="coerce")
    return frame[age < days]


def population_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    thresholds: DriftThresholds = DriftThresholds(),
    *,
    workers: int | None = None,
) -> PopulationDrift:
    """Drift of the open population (every current row against every reference row) and of
    the recent intake (rows with days_since_created < `thresholds.recent_days` on both sides);
    see the module docstring. The recent intake is judged only when the model has the lead-age
    feature and both sides hold at least `thresholds.recent_min_rows` rows.
    """
    t = thresholds

    def run(ref: pd.DataFrame, cur: pd.DataFrame, cols: Sequence[str], psi: float) -> pd.DataFrame:
        return data_drift(
            ref,
            cur,
            cols,
            categorical,
            bins=t.bins,
            psi_threshold=psi,
            p_value_threshold=t.ks_pvalue,
            chi2_p_value_threshold=t.chi2_pvalue,
            ks_min_statistic=t.ks_min_statistic,
            chi2_min_distance=t.chi2_min_distance,
            workers=workers,
        )

    open_frame = run(reference, current, features, t.psi)
    open_frame.insert(1, "column", open_frame["feature"])
    open_frame.insert(2, "population", OPEN)
    populations = [
        Population(OPEN, "the open population", len(reference), len(current), True, t.psi)
    ]
    frames = [open_frame]
    description = f"the recent intake (created in the last {t.recent_days} days)"
    if AGE_COLUMN not in features:
        populations.append(
            Population(RECENT, description, 0, 0, False, t.recent_psi, f"no {AGE_COLUMN} feature")
        )
    else:
        ref_recent, cur_recent = (
            recent_rows(reference, t.recent_days),
            recent_rows(current, t.recent_days),
        )
        n_ref, n_cur = len(ref_recent), len(cur_recent)
        judged = min(n_ref, n_cur) >= t.recent_min_rows
        note = (
            ""
            if judged
            else f"{n_cur:,} current and {n_ref:,} reference rows; at least "
            f"{t.recent_min_rows:,} each needed (monitoring.recent_intake_min_rows)"
        )
        populations.append(
            Population(RECENT, description, n_ref, n_cur, judged, t.recent_psi, note)
        )
        if judged:
            recent = run(ref_recent, cur_recent, recent_intake_features(features), t.recent_psi)
            recent.insert(1, "column", recent["feature"])
            recent.insert(2, "population", RECENT)
            recent["feature"] = recent["column"] + RECENT_SUFFIX
            frames.append(recent)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)
    return PopulationDrift(frame, populations)
