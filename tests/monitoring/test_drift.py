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


def test_a_tiny_shift_on_large_samples_is_significant_but_not_drift():
    # 200k vs 200k rows, numeric mean shifted by 0.03 SD and one category by 1 point: both tests
    # give p-values far below 0.01, but the effect sizes are tiny, so neither test nor PSI flags it
    rng = np.random.default_rng(3)
    n = 200_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n), "c": rng.choice(list("abc"), n)})
    cur = pd.DataFrame(
        {"x": rng.normal(0.03, 1, n), "c": rng.choice(list("abc"), n, p=[0.3433, 0.3333, 0.3234])}
    )
    result = drift.data_drift(ref, cur, ["x", "c"], ["c"]).set_index("feature")
    assert (result["p_value"] < 0.01).all()  # the p-value alone would call both drifted
    assert result.loc["x", "effect"] == "ks_statistic"
    assert result.loc["x", "effect_size"] == pytest.approx(result.loc["x", "statistic"])
    assert result.loc["x", "effect_size"] < 0.03
    assert result.loc["c", "effect"] == "tv_distance" and result.loc["c", "effect_size"] < 0.02
    assert not result["test_drifted"].any()
    assert not result["psi_drifted"].any()


def test_a_real_shift_is_flagged_by_both_the_test_and_psi():
    rng = np.random.default_rng(4)
    n = 200_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n), "c": rng.choice(list("abc"), n)})
    cur = pd.DataFrame(
        {"x": rng.normal(0.6, 1, n), "c": rng.choice(list("abc"), n, p=[0.6, 0.2, 0.2])}
    )
    result = drift.data_drift(ref, cur, ["x", "c"], ["c"]).set_index("feature")
    assert result["test_drifted"].all() and result["psi_drifted"].all()
    # the total variation distance by hand: ½(|0.6 − ⅓| + 2·|0.2 − ⅓|) = 0.2667
    assert result.loc["c", "effect_size"] == pytest.approx(0.2667, abs=0.01)


def test_a_large_effect_on_a_tiny_sample_is_not_significant():
    ref = pd.Series([0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 3)
    cur = pd.Series([0.5, 1.5, 2.5, 3.5, 4.5, 5.5] * 3)
    result = drift.feature_drift("x", ref, cur, categorical=False)
    assert result.effect_size >= 0.1 and result.p_value >= 0.01
    assert not result.test_drifted


def test_effect_size_threshold_is_configurable():
    rng = np.random.default_rng(5)
    ref = pd.Series(rng.normal(0, 1, 50_000))
    cur = pd.Series(rng.normal(0.15, 1, 50_000))  # KS statistic ≈ 0.06
    loose = drift.feature_drift("x", ref, cur, categorical=False, min_effect=0.05)
    strict = drift.feature_drift("x", ref, cur, categorical=False, min_effect=0.1)
    assert loose.test_drifted and not strict.test_drifted


SOURCES = ["Web", "Referral", "Event", "Social"]


def leads(n: int, seed: int, recent_sources_p=(0.4, 0.3, 0.2, 0.1)) -> pd.DataFrame:
    """Open leads aged 0–119 days; those younger than 14 days draw their source from
    `recent_sources_p`, older ones from the base mix."""
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 120, n)
    base = rng.choice(SOURCES, n, p=[0.4, 0.3, 0.2, 0.1])
    recent = rng.choice(SOURCES, n, p=list(recent_sources_p))
    return pd.DataFrame(
        {
            "lead_source": np.where(age < 14, recent, base),
            "industry": rng.choice(list("abcdef"), n),
            "days_since_created": age,
            "n_visits_7d": rng.poisson(np.where(age < 7, 3.0, 1.0)),
            "engagement_score": rng.gamma(2.0, 10.0, n),
        }
    )


FEATURES = ["lead_source", "industry", "days_since_created", "n_visits_7d", "engagement_score"]
CATEGORICAL = ["lead_source", "industry"]


def test_recent_intake_flags_a_mix_change_the_open_population_misses():
    reference = leads(30_000, seed=6)
    # Event 0.2 -> 0.5 of the leads created in the last 14 days
    current = leads(8_000, seed=7, recent_sources_p=(0.25, 0.15, 0.5, 0.1))
    result = drift.population_drift(reference, current, FEATURES, CATEGORICAL)
    frame = result.frame.set_index("feature")
    open_psi = frame.loc["lead_source", "psi"]
    recent_psi = frame.loc["lead_source (recent intake)", "psi"]
    assert open_psi < 0.1 < 0.2 < recent_psi  # diluted by the older leads vs undiluted
    assert result.drifted() == ["lead_source (recent intake)"]
    assert result.drifted(drift.OPEN) == []
    assert frame.loc["lead_source (recent intake)", "population"] == drift.RECENT
    assert frame.loc["lead_source (recent intake)", "column"] == "lead_source"
    # like with like: the lead age is not compared on the recent intake, and the early
    # engagement of young leads is compared with young reference leads (no false drift)
    assert "days_since_created (recent intake)" not in frame.index
    assert not frame.loc["n_visits_7d (recent intake)", "psi_drifted"]
    recent = {p.name: p for p in result.populations}[drift.RECENT]
    assert recent.judged and recent.current_rows == int((current["days_since_created"] < 14).sum())
    verdict = result.verdict()
    assert "DRIFT in the recent intake (created in the last 14 days)" in verdict
    assert "lead_source" in verdict and "no drift in the open population" in verdict


def test_recent_intake_uses_its_own_threshold_and_window():
    reference = leads(30_000, seed=8)
    current = leads(8_000, seed=9, recent_sources_p=(0.3, 0.25, 0.35, 0.1))  # PSI ≈ 0.12
    default = drift.population_drift(reference, current, FEATURES, CATEGORICAL)
    assert default.drifted() == ["lead_source (recent intake)"]
    strict = drift.DriftThresholds(recent_psi=0.2)
    assert drift.population_drift(reference, current, FEATURES, CATEGORICAL, strict).drifted() == []
    # a 60-day window mixes the changed 14 days with 46 unchanged ones
    wide = drift.DriftThresholds(recent_days=60)
    assert drift.population_drift(reference, current, FEATURES, CATEGORICAL, wide).drifted() == []


def test_too_small_a_recent_intake_is_not_judged_and_says_why():
    reference = leads(30_000, seed=10)
    current = leads(2_000, seed=11, recent_sources_p=(0.1, 0.1, 0.7, 0.1))  # ~230 recent rows
    result = drift.population_drift(reference, current, FEATURES, CATEGORICAL)
    assert set(result.frame["population"]) == {drift.OPEN}
    recent = {p.name: p for p in result.populations}[drift.RECENT]
    assert not recent.judged
    assert "not judged" in result.verdict() and "recent_intake_min_rows" in result.verdict()
    lowered = drift.DriftThresholds(recent_min_rows=100)
    assert drift.population_drift(reference, current, FEATURES, CATEGORICAL, lowered).drifted() == [
        "lead_source (recent intake)"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("monitoring.ks_min_statistic", 0),
        ("monitoring.chi2_min_distance", 1.5),
        ("monitoring.recent_intake_days", 0),
        ("monitoring.recent_intake_psi_threshold", -0.1),
        ("monitoring.recent_intake_min_rows", 0),
    ],
)
def test_a_bad_drift_setting_is_refused_by_name(key, value):
    from ml.config import load_settings
    from ml.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(overrides={key: value}, env={})


def test_thresholds_come_from_the_settings():
    from ml.config import load_settings

    settings = load_settings(
        overrides={"monitoring.recent_intake_days": 21, "monitoring.ks_min_statistic": 0.2}, env={}
    )
    t = drift.DriftThresholds.from_settings(settings)
    assert (t.recent_days, t.ks_min_statistic, t.psi) == (21, 0.2, 0.2)
    assert t.recent_psi == settings.monitoring.recent_intake_psi_threshold
