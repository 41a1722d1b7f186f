"""Data drift between a reference sample and a current one: PSI, KS and chi-square.

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
for a new category holding 5 % of current rows, which alone crosses the 0.2 threshold.

KS (numeric) compares the non-missing values; its p-value is the asymptotic two-sided one that
`scipy.stats.ks_2samp(method="asymp")` gives. Chi-square (categorical) tests the 2×k table of
counts over the PSI bins that are not empty on both sides. With a million rows both tests call
the smallest shift significant, so alerts and retraining use PSI; the tests are evidence.

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

EPSILON = 1e-4
NEW_CATEGORY = "__new__"
MISSING = "__missing__"
# integer-valued features spanning at most this many values use the bincount path
MAX_INTEGER_RANGE = 1 << 21


@dataclass(frozen=True)
class FeatureDrift:
    """Drift figures of one feature; `drifted` is the PSI verdict that alerts use."""

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

    @property
    def drifted(self) -> bool:
        return self.psi_drifted


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


def feature_drift(
    feature: str,
    reference: pd.Series,
    current: pd.Series,
    *,
    categorical: bool,
    bins: int = 10,
    psi_threshold: float = 0.2,
    p_value_threshold: float = 0.01,
) -> FeatureDrift:
    """PSI plus KS (numeric) or chi-square (categorical) for one feature."""
    if categorical:
        ref_shares, cur_shares = categorical_shares(reference, current)
        psi = psi_from_shares(ref_shares, cur_shares)
        statistic, p_value = chi2_test(
            np.round(ref_shares * len(reference)), np.round(cur_shares * len(current))
        )
        n_ref, n_cur, test = len(reference), len(current), "chi2"
        missing_share = float(cur_shares[-1])
    else:
        psi, statistic, p_value, n_ref, n_cur, missing_share = _numeric_drift(
            reference, current, bins
        )
        test = "ks"
    return FeatureDrift(
        feature=feature,
        kind="categorical" if categorical else "numeric",
        psi=psi,
        test=test,
        statistic=float(statistic),
        p_value=float(p_value),
        psi_drifted=psi > psi_threshold,
        test_drifted=p_value < p_value_threshold,
        reference_rows=int(n_ref),
        current_rows=int(n_cur),
        missing_share=missing_share,
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
    workers: int | None = None,
) -> pd.DataFrame:
    """Drift of every feature: one row per feature (FeatureDrift's fields), worst PSI first.

    Args:
        workers: threads (default: the CPU count, at most 8).
    """
    categorical = set(categorical)

    def one(name: str) -> dict:
        return asdict(
            feature_drift(
                name,
                reference[name],
                current[name],
                categorical=name in categorical,
                bins=bins,
                psi_threshold=psi_threshold,
                p_value_threshold=p_value_threshold,
            )
        )

    workers = workers or min(8, os.cpu_count() or 1)
    # the slow categoricals first, so they do not straggle at the end of the pool
    ordered = sorted(features, key=lambda f: f not in categorical)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, ordered))
    frame = pd.DataFrame(rows, columns=[f for f in FeatureDrift.__dataclass_fields__])
    return frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)
