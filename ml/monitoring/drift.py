"""Data drift between a reference sample and a current one: PSI, KS and chi-square.

PSI bins are fixed on the reference: numeric features use its quantiles (duplicate edges merged),
with open outer bins so every current value lands somewhere and missing values as a bin of their
own; categorical features use the reference's categories plus one bin for categories the reference
never saw. An empty bin on either side gets a share of `EPSILON`, so PSI stays finite and a
category that appears from nothing still adds a large, finite term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4
NEW_CATEGORY = "__new__"
MISSING = "__missing__"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    psi_drifted: bool
    test_drifted: bool

    @property
    def drifted(self) -> bool:
        return self.psi_drifted


def psi_from_shares(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.clip(np.asarray(reference, dtype=float), EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior quantile edges of the reference's non-missing values (duplicates merged)."""
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares per bin: len(edges)+1 value bins (right-closed) and a last bin for missing."""
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / max(values.size, 1)


def categorical_shares(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Shares over the reference's categories, plus one bin for unseen ones."""
    ref = reference.astype("object").fillna(MISSING)
    cur = current.astype("object").fillna(MISSING)
    categories = pd.Index(sorted(ref.unique(), key=str))
    ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy(float)
    cur_counts_all = cur.value_counts()
    cur_counts = cur_counts_all.reindex(categories, fill_value=0).to_numpy(float)
    unseen = float(cur_counts_all.drop(categories, errors="ignore").sum())
    ref_shares = np.append(ref_counts, 0.0) / max(len(ref), 1)
    cur_shares = np.append(cur_counts, unseen) / max(len(cur), 1)
    return ref_shares, cur_shares


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
        observed = np.vstack([ref_shares * len(reference), cur_shares * len(current)])
        observed = observed[:, observed.sum(axis=0) > 0]
        if observed.shape[1] < 2:
            statistic, p_value = 0.0, 1.0
        else:
            statistic, p_value, _, _ = stats.chi2_contingency(observed, correction=False)
        test = "chi2"
    else:
        ref = reference.to_numpy(dtype=float, na_value=np.nan)
        cur = current.to_numpy(dtype=float, na_value=np.nan)
        edges = numeric_bin_edges(ref, bins)
        psi = psi_from_shares(numeric_shares(ref, edges), numeric_shares(cur, edges))
        ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        if ref_ok.size and cur_ok.size:
            result = stats.ks_2samp(ref_ok, cur_ok, method="asymp")
            statistic, p_value = float(result.statistic), float(result.pvalue)
        else:
            statistic, p_value = 0.0, 1.0
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
    )


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    *,
    bins: int = 10,
    psi_threshold: float = 0.2,
    p_value_threshold: float = 0.01,
) -> pd.DataFrame:
    """Drift of every feature: one row per feature, worst PSI first."""
    rows = [
        feature_drift(
            name,
            reference[name],
            current[name],
            categorical=name in categorical,
            bins=bins,
            psi_threshold=psi_threshold,
            p_value_threshold=p_value_threshold,
        ).__dict__
        for name in features
    ]
    return pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)
