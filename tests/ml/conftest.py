"""Fabricated training frames for the model tests.

Until the generator → dbt → Feast pipeline is wired into the session fixtures, these frames stand
in for what the `lead_scoring` feature service returns: one row per (lead, weekly snapshot) with
the contract's feature columns, the label, and the true probability the label was drawn from.
The signal is deliberately non-linear (interactions and thresholds) so a tree model can beat
logistic regression and the hand-weighted rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.config import Settings, load_settings
from ml.contract import ACTIVITY_TYPES, BUDGET_BANDS, INDUSTRIES, LEAD_SOURCES, LICENSE_TYPES
from ml.model import LABEL
from ml.train import FitResult, Split, fit_scorer, split_by_time

COUNTRIES = [
    "India",
    "United Kingdom",
    "Pakistan",
    "Egypt",
    "Russia",
    "Germany",
    "China",
    "United States",
    "Philippines",
    "France",
]
# Relative daily rates of each activity type for an average lead.
RATES = {
    "website_visit": 0.30,
    "pricing_page_view": 0.06,
    "email_open": 0.20,
    "email_click": 0.05,
    "form_submit": 0.01,
    "webinar": 0.005,
    "call_connected": 0.02,
    "meeting_booked": 0.008,
    "document_upload": 0.006,
}


def make_training_frame(
    n_leads: int = 4000, weeks: int = 40, seed: int = 0, start: str = "2025-11-03"
) -> pd.DataFrame:
    """A seeded frame of weekly snapshots with features, label and `p_true` (the oracle)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, weeks, n_leads)
    n_snaps = rng.integers(1, 8, n_leads)
    lead_idx = np.repeat(np.arange(n_leads), n_snaps)
    k = np.concatenate([np.arange(m) for m in n_snaps])
    week = first[lead_idx] + k
    keep = week < weeks
    lead_idx, k, week = lead_idx[keep], k[keep], week[keep]
    n = len(lead_idx)

    # Static lead attributes.
    source = rng.choice(LEAD_SOURCES, n_leads)
    industry = rng.choice(INDUSTRIES, n_leads)
    country = rng.choice(COUNTRIES, n_leads)
    license_type = rng.choice(LICENSE_TYPES, n_leads)
    budget = rng.choice(BUDGET_BANDS, n_leads, p=[0.35, 0.3, 0.2, 0.15])
    size = np.round(rng.lognormal(2.0, 1.2, n_leads)).astype(int)
    visas = rng.poisson(2.0, n_leads)
    intensity = rng.gamma(1.5, 1 / 1.5, n_leads)
    offset = rng.integers(0, 7, n_leads)

    age = (k * 7 + offset[lead_idx]).astype(int)
    lam = intensity[lead_idx] * np.exp(rng.normal(0, 0.3, n))  # this snapshot's activity level
    frame: dict[str, object] = {
        "lead_id": np.array([f"L{i:07d}" for i in range(n_leads)])[lead_idx],
        "lead_source": source[lead_idx],
        "industry": industry[lead_idx],
        "country": country[lead_idx],
        "license_type": license_type[lead_idx],
        "budget_band": budget[lead_idx],
        "company_size": size[lead_idx],
        "visa_quota": visas[lead_idx],
        "days_since_created": age,
    }
    for t in ACTIVITY_TYPES:
        c7 = rng.poisson(RATES[t] * lam * np.minimum(age + 1, 7))
        c30 = c7 + rng.poisson(RATES[t] * lam * np.clip(age + 1 - 7, 0, 23))
        c90 = c30 + rng.poisson(RATES[t] * lam * np.clip(age + 1 - 30, 0, 60))
        frame[f"n_{t}_7d"], frame[f"n_{t}_30d"], frame[f"n_{t}_90d"] = c7, c30, c90
    f = pd.DataFrame(frame)
    f["website_visits"] = f["n_website_visit_90d"]
    f["email_opens"] = f["n_email_open_90d"]
    any_activity = f[[f"n_{t}_90d" for t in ACTIVITY_TYPES]].sum(axis=1) > 0
    f["days_since_last_activity"] = np.where(
        any_activity, np.minimum(rng.exponential(3 / np.maximum(lam, 0.05)), age), np.nan
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        f["email_click_rate_90d"] = np.where(
            f.n_email_open_90d > 0, f.n_email_click_90d / f.n_email_open_90d, np.nan
        )
        f["pricing_view_rate_90d"] = np.where(
            f.n_website_visit_90d > 0, f.n_pricing_page_view_90d / f.n_website_visit_90d, np.nan
        )
    # The sales team's rule: a linear, capped points score.
    f["engagement_score"] = np.clip(
        2 * f.n_website_visit_30d
        + 6 * f.n_pricing_page_view_30d
        + 1 * f.n_email_open_30d
        + 15 * f.n_meeting_booked_30d
        + 5 * f.n_call_connected_30d,
        0,
        100,
    ).astype(float)

    # True log-odds: interactions and thresholds a linear model cannot express.
    hot_industry = f.industry.isin(["Technology", "E-commerce", "Trading"])
    big_budget = f.budget_band.isin(["50k-100k", "100k+"])
    recent = f.days_since_last_activity.fillna(999) < 5
    logit = (
        -3.2
        + 2.2 * (hot_industry & big_budget)
        - 0.8 * (hot_industry & ~big_budget)
        + 1.6 * (f.n_meeting_booked_30d > 0) * recent
        + 1.4 * (f.pricing_view_rate_90d.fillna(0) > 0.25) * (f.lead_source == "Referral")
        + 0.9 * (f.lead_source.isin(["Referral", "Partner agent"]))
        - 1.2 * (np.abs(np.log1p(f.company_size) - 2.5) > 1.5)
        - 0.025 * np.maximum(f.days_since_created - 50, 0)
    )
    f["p_true"] = 1 / (1 + np.exp(-logit))
    f[LABEL] = (rng.random(n) < f.p_true).astype(int)
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(week * 7, unit="D")
    f["snapshot_ts"] = ts
    f["event_timestamp"] = ts
    return f.sort_values(["snapshot_ts", "lead_id"], ignore_index=True)


@pytest.fixture(scope="session")
def make_frame():
    """The fabricator itself, for tests that need a frame of their own."""
    return make_training_frame


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    return make_training_frame()


@pytest.fixture(scope="session")
def ml_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings with a smaller forest so the tests stay fast."""
    return load_settings(
        overrides={
            "paths.data_dir": str(tmp_path_factory.mktemp("ml")),
            "training.xgboost.n_estimators": 300,
            "training.xgboost.learning_rate": 0.1,
            "training.backtest.folds": 4,
            "training.split.test_days": 14,
            "evaluation.top_k_count": 200,
        }
    )


@pytest.fixture(scope="session")
def split(training_frame: pd.DataFrame, ml_settings: Settings) -> Split:
    return split_by_time(training_frame, ml_settings)


@pytest.fixture(scope="session")
def trained(split: Split, ml_settings: Settings) -> FitResult:
    """One XGBoost fit on the latest fold, shared by the tests that only read the result."""
    return fit_scorer(split, ml_settings, family="xgboost")
