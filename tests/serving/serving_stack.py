"""A tiny serving stack in a folder: fabricated marts → Feast repo applied → online store
refreshed → two small models registered (v1 @champion, v2 @challenger).

Used by the serving tests and by tests/benchmarks/bench_serving.py. The marts follow the
contract's columns and types (docs/contracts.md); values are random but seeded, with nulls.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from ml.config import Settings, load_settings
from ml.model import CATEGORICAL_FEATURES, LeadScorer, feature_columns

ACTIVITY_TYPES = (
    "website_visit", "pricing_page_view", "email_open", "email_click", "form_submit",
    "webinar", "call_connected", "meeting_booked", "document_upload",
)
LEVELS = {
    "lead_source": ["Web", "Referral", "Partner agent", "Event", "Social", "Email campaign",
                    "Walk-in", "Call centre"],
    "industry": ["Trading", "Consulting", "Technology", "E-commerce", "Real estate"],
    "country": ["India", "United Kingdom", "Germany", "Egypt"],
    "license_type": ["Commercial", "Industrial", "Service", "Freelance"],
    "budget_band": ["<25k", "25k-50k", "50k-100k", "100k+"],
}
INT_COLUMNS = (
    ["company_size", "visa_quota", "days_since_created"]
    + [f"n_{a}_{w}d" for a in ACTIVITY_TYPES for w in (7, 30, 90)]
    + ["website_visits", "email_opens"]
)
DOUBLE_COLUMNS = [
    "days_since_last_activity", "email_click_rate_90d", "pricing_view_rate_90d",
    "engagement_score",
]
AS_OF = datetime(2026, 10, 26)  # a Monday, 00:00 UTC


def lead_id(i: int) -> str:
    return f"L{i:07d}"


def feature_frame(n: int, seed: int = 7, start: int = 0) -> pd.DataFrame:
    """Random contract-typed features of leads L{start}… (5 % of strings and 20 % of
    doubles null)."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {"lead_id": [lead_id(i) for i in range(start, start + n)]}
    for name, levels in LEVELS.items():
        values = rng.choice(levels, n).astype(object)
        values[rng.random(n) < 0.05] = None
        data[name] = values
    for name in INT_COLUMNS:
        data[name] = rng.poisson(3.0, n).astype(np.int32)
    for name in DOUBLE_COLUMNS:
        values = rng.random(n) * (100.0 if name == "engagement_score" else 1.0)
        values[rng.random(n) < 0.2] = np.nan
        data[name] = values
    return pd.DataFrame(data)


def write_marts(settings: Settings, n_leads: int, seed: int = 7) -> pd.DataFrame:
    """lead_features(_latest).parquet with one snapshot (the as-of) per lead; returns it."""
    frame = feature_frame(n_leads, seed)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("snapshot_ts", pa.array([AS_OF] * n_leads, pa.timestamp("us")))
    marts = settings.paths.marts_dir
    marts.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, marts / "lead_features.parquet")
    pq.write_table(table, marts / "lead_features_latest.parquet")
    return frame


def train_scorer(seed: int, n: int = 3000, rounds: int = 40, depth: int = 4) -> LeadScorer:
    """A small XGBoost scorer on random features with a planted signal (seed changes trees)."""
    frame = feature_frame(n, seed=seed + 100)
    logit = (
        -2.0
        + 0.03 * frame["engagement_score"].fillna(0)
        + 0.4 * frame["n_meeting_booked_30d"]
        + 1.0 * frame["industry"].eq("Technology")
        - 0.2 * frame["days_since_created"]
    )
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    categorical = list(CATEGORICAL_FEATURES)
    scorer = LeadScorer(
        feature_names=feature_columns(categorical),
        categorical_features=categorical,
        categories={c: sorted(LEVELS[c]) for c in categorical},
        booster=xgb.Booster(),
    )
    dtrain = xgb.DMatrix(scorer.prepare(frame), label=y, enable_categorical=True)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.2, "nthread": 1,
              "seed": seed, "tree_method": "hist", "max_cat_to_onehot": 4}
    scorer.booster = xgb.train(params, dtrain, num_boost_round=rounds)
    return scorer


def register(settings: Settings, scorer: LeadScorer, test_auc: float = 0.8) -> int:
    """Register `scorer` as a new version (it becomes @challenger); returns the version."""
    from ml.registry import log_and_register

    example = feature_frame(5, seed=1)[scorer.feature_names]
    info = log_and_register(
        scorer, params={"fabricated": True}, metrics={"test_auc": test_auc}, artifacts={},
        tags={}, input_example=example, settings=settings, actor="tests",
    )
    return info.version


def build_stack(data_dir: Path, n_leads: int = 300, overrides: dict | None = None) -> Settings:
    """Everything the service reads, under `data_dir`: v1 @champion, v2 @challenger."""
    from ml.feature_store import apply_feature_repo
    from ml.online_refresh import refresh_online_store
    from ml.registry import promote

    settings = load_settings(overrides={"paths.data_dir": str(data_dir), **(overrides or {})})
    write_marts(settings, n_leads)
    apply_feature_repo(settings)
    refresh_online_store(settings)
    register(settings, train_scorer(seed=1))
    promote(settings, reason="tests", actor="tests", force=True)
    register(settings, train_scorer(seed=2))
    return settings


class Aliases:
    """A movable stand-in for the registry's aliases."""

    def __init__(self, champion: int | None = 1, challenger: int | None = 2) -> None:
        self.versions = {"champion": champion, "challenger": challenger}

    def __call__(self, settings: Settings, alias: str) -> int | None:
        return self.versions[alias]
