"""Small fabricated models and frames for the registry, scoring and CRM tests.

Not a test module: imported by test_registry.py, test_scoring.py, test_crm.py and by the CRM
writer subprocess of the kill -9 test.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit

from ml.model import CATEGORICAL_FEATURES, LeadScorer, feature_columns

LEVELS = {
    "lead_source": ["Web", "Referral", "Partner agent", "Event"],
    "industry": ["Trading", "Media", "Technology"],
    "country": ["India", "United Arab Emirates"],
    "license_type": ["Commercial", "Industrial", "Freelance"],
    "budget_band": ["<25k", "25k-50k", "100k+"],
}


def make_features(n: int, seed: int = 0) -> pd.DataFrame:
    """A frame shaped like `lead_features_latest`: lead_id plus every model feature."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {"lead_id": [f"L{i:07d}" for i in range(n)]}
    for col in feature_columns():
        if col in LEVELS:
            data[col] = rng.choice(LEVELS[col], n)
        elif col.endswith("_rate_90d"):
            data[col] = np.where(rng.random(n) < 0.2, np.nan, rng.random(n))
        elif col == "days_since_last_activity":
            days = rng.integers(0, 90, n).astype(float)
            data[col] = np.where(rng.random(n) < 0.1, np.nan, days)
        elif col == "engagement_score":
            data[col] = rng.random(n) * 100
        else:
            data[col] = rng.poisson(2, n)
    return pd.DataFrame(data)


@functools.cache
def make_scorer(seed: int = 0, n: int = 600, rounds: int = 15) -> tuple[LeadScorer, pd.DataFrame]:
    """A tiny trained LeadScorer (no calibrator) and its training features."""
    frame = make_features(n, seed)
    rng = np.random.default_rng(seed + 1)
    logit = (
        0.6 * frame["n_pricing_page_view_7d"]
        - 0.03 * frame["days_since_last_activity"].fillna(90)
        + (frame["lead_source"] == "Partner agent")
        - 1.0
    )
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    scorer = LeadScorer(
        feature_names=feature_columns(),
        categorical_features=list(CATEGORICAL_FEATURES),
        categories={k: sorted(v) for k, v in LEVELS.items()},
        booster=xgb.Booster(),
    )
    matrix = xgb.DMatrix(scorer.prepare(frame), label=label, enable_categorical=True)
    params = {
        "max_depth": 3,
        "eta": 0.3,
        "objective": "binary:logistic",
        "seed": seed,
        "nthread": 1,
    }
    scorer.booster = xgb.train(params, matrix, rounds)
    return scorer, frame


def make_scores(n: int, seed: int) -> pd.DataFrame:
    """A scores frame as ml.scoring produces it, without a model (for CRM write tests)."""
    rng = np.random.default_rng(seed)
    probability = rng.random(n)
    score = np.round(probability * 100, 1)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i:07d}" for i in range(n)],
            "probability": probability,
            "score": score,
            "tier": np.where(score >= 40, "A", np.where(score >= 20, "B", "D")),
            "score_change": np.where(rng.random(n) < 0.2, np.nan, np.round(rng.normal(size=n), 1)),
            "reasons_for": '["viewed the pricing page 4 times in the last 7 days", '
            '"booked a meeting in the last 30 days", "referred by a partner agent"]',
            "reasons_against": '["no activity for 45 days", "company of 150 employees"]',
        }
    )


SCORED_AT = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def reference_scores(
    scorer: LeadScorer, features: pd.DataFrame, tiers: dict[str, float], n: int = 3
) -> pd.DataFrame:
    """Scores and reasons computed the way ml.scoring did before its fast path: the frame
    prepared by pandas (`LeadScorer.prepare`), margin by `inplace_predict` on it, contributions
    through a DMatrix built from it; a missing input (null or unseen level) is never a reason.
    The fast path must reproduce these exactly."""
    from ml import reasons

    prepared = scorer.prepare(features)
    margin = np.asarray(
        scorer.booster.inplace_predict(prepared, predict_type="margin"), dtype=np.float64
    )
    if scorer.calibrator is None:
        probability = expit(margin)
    else:
        probability = np.clip(scorer.calibrator.transform(margin), 0.0, 1.0)
    out = scorer.booster.predict(
        xgb.DMatrix(prepared, enable_categorical=True), pred_contribs=True, approx_contribs=True
    )
    contribs = np.asarray(out, dtype=np.float64)[:, :-1]
    contribs[prepared.isna().to_numpy()] = 0
    reasons_for, reasons_against = reasons.explain(contribs, scorer.feature_names, features, n)
    score = np.round(probability * 100.0, 1)
    tier = np.select(
        [score >= tiers["A"], score >= tiers["B"], score >= tiers["C"]], ["A", "B", "C"], "D"
    )
    return pd.DataFrame(
        {
            "lead_id": features["lead_id"].astype(str).to_numpy(),
            "probability": probability,
            "score": score,
            "tier": tier,
            "reasons_for": reasons_for,
            "reasons_against": reasons_against,
        }
    )


def awkward_features(n: int, seed: int) -> pd.DataFrame:
    """`make_features` with what real inputs bring: nulls in every column, levels the model never
    saw, categoricals as pandas Categorical with other levels, numbers as nullable integers and
    as Python objects (the service's frames), and numeric strings."""
    frame = make_features(n, seed)
    rng = np.random.default_rng(seed + 99)
    for col in frame.columns[1:]:
        values = frame[col].astype(object).to_numpy()
        values[rng.random(n) < 0.07] = None
        frame[col] = values
    frame.loc[rng.random(n) < 0.05, "industry"] = "Aerospace"  # unseen level
    frame.loc[rng.random(n) < 0.05, "country"] = "Atlantis"
    frame["budget_band"] = frame["budget_band"].astype("category")  # levels in another order
    frame["company_size"] = frame["company_size"].astype("Int64")
    frame["n_email_open_7d"] = frame["n_email_open_7d"].astype(float)
    frame["website_visits"] = [None if v is None else str(v) for v in frame["website_visits"]]
    return frame
