"""PSI, KS and chi-square against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml.monitoring import drift


def test_psi_of_two_share_vectors_by_hand():
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5)
    expected = -0.2 * math.log(0.6) + 0.2 * math.log(1.4)
    assert drift.psi_from_shares([0.5, 0.5], [0.3, 0.7]) == pytest.approx(expected)
    assert drift.psi_from_shares([0.25] * 4, [0.25] * 4) == 0.0


def test_empty_bin_counts_as_epsilon_so_psi_stays_finite():
    psi = drift.psi_from_shares([1.0, 0.0], [0.9, 0.1])
    eps = drift.EPSILON
    assert psi == pytest.approx(-0.1 * math.log(0.9) + (0.1 - eps) * math.log(0.1 / eps))
    assert math.isfinite(psi) and psi > 0.2


def test_numeric_bins_are_reference_quantiles_with_a_missing_bin():
    ref = np.arange(1, 11, dtype=float)  # 1..10
    edges = drift.numeric_bin_edges(ref, 2)
    assert edges.tolist() == [5.5]
    cur = np.array([1.0, 2.0, 9.0, 100.0, np.nan])  # 100 lands in the open outer bin
    assert drift.numeric_shares(cur, edges).tolist() == [0.4, 0.4, 0.2]


def test_integer_and_sorted_paths_give_the_same_figures():
    rng = np.random.default_rng(0)
    ref_int = pd.Series(rng.poisson(3, 5000))
    cur_int = pd.Series(rng.poisson(3.4, 4000))
    fast = drift.feature_drift("x", ref_int, cur_int, categorical=False)
    # the same values as floats with a non-integer nudge take the sorting path
    slow = drift.feature_drift(
        "x", ref_int + 1e-9 * (ref_int > 99), cur_int.astype(float) + 0.0, categorical=False
    )
    ref_f, cur_f = ref_int.to_numpy(float), cur_int.to_numpy(float)
    edges = np.unique(np.quantile(ref_f, np.linspace(0, 1, 11)[1:-1]))
    expected_psi = drift.psi_from_shares(
        drift.numeric_shares(ref_f, edges), drift.numeric_shares(cur_f, edges)
    )
    assert fast.psi == pytest.approx(expected_psi)
    assert slow.psi == pytest.approx(expected_psi)
    ks = stats.ks_2samp(ref_f, cur_f, method="asymp")
    for result in (fast, slow):
        assert result.statistic == pytest.approx(ks.statistic)
        assert result.p_value == pytest.approx(ks.pvalue, rel=1e-6, abs=1e-300)


def test_continuous_feature_matches_scipy_ks_and_ignores_missing():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 3000)
    cur = rng.normal(0.1, 1, 2000)
    cur[:100] = np.nan
    result = drift.feature_drift("x", pd.Series(ref), pd.Series(cur), categorical=False)
    ks = stats.ks_2samp(ref, cur[~np.isnan(cur)], method="asymp")
    assert result.statistic == pytest.approx(ks.statistic)
    assert result.p_value == pytest.approx(ks.pvalue, rel=1e-6)
    assert result.missing_share == pytest.approx(0.05)


def test_categorical_psi_and_chi_square_by_hand_with_a_new_category():
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    cur = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 20)  # "c" never seen in the reference
    ref_shares, cur_shares = drift.categorical_shares(ref, cur)
    assert ref_shares.tolist() == [0.5, 0.5, 0.0]
    assert cur_shares.tolist() == [0.4, 0.4, 0.2]
    result = drift.feature_drift("cat", ref, cur, categorical=True)
    eps = drift.EPSILON
    expected = 2 * (-0.1 * math.log(0.8)) + (0.2 - eps) * math.log(0.2 / eps)
    assert result.psi == pytest.approx(expected)
    assert result.psi_drifted
    chi2, p, _, _ = stats.chi2_contingency([[50, 50, 0], [40, 40, 20]], correction=False)
    assert result.statistic == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p)
    assert result.test == "chi2" and result.test_drifted


def test_missing_is_a_category_of_its_own():
    ref = pd.Series(["a", None, "a", None])
    cur = pd.Series(["a", "a", "a", None])
    ref_shares, cur_shares = drift.categorical_shares(ref, cur)
    assert ref_shares.tolist() == [0.5, 0.5, 0.0]  # categories sorted: __missing__, a
    assert cur_shares.tolist() == [0.25, 0.75, 0.0]


def test_same_distribution_is_not_flagged_and_a_shift_is():
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"n": rng.poisson(2, 20000), "c": rng.choice(list("xyz"), 20000)})
    same = pd.DataFrame({"n": rng.poisson(2, 20000), "c": rng.choice(list("xyz"), 20000)})
    shifted = pd.DataFrame(
        {"n": rng.poisson(4, 20000), "c": rng.choice(list("xyz"), 20000, p=[0.7, 0.2, 0.1])}
    )
    quiet = drift.data_drift(ref, same, ["n", "c"], ["c"])
    loud = drift.data_drift(ref, shifted, ["n", "c"], ["c"])
    assert not quiet["psi_drifted"].any()
    assert loud["psi_drifted"].all()
    assert loud["psi"].is_monotonic_decreasing
