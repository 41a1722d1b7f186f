"""Adding an activity type in the settings adds its windowed counts end to end, with no code
change: dbt (staging accepts it, the mart counts it, the engagement rule weighs it), Feast (the
feature service serves it), training (the model's feature list) and scoring (the reasons word it).

Small data (300 leads, 150 days) and the logistic family keep it to one dbt build.
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import wording
from ml.config import Settings, load_settings
from ml.feature_store import apply_feature_repo, feature_names, get_store
from ml.scoring import score_frame
from ml.train import final_split, fit_scorer
from ml.training_set import build_training_set
from ml.warehouse import build_warehouse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt"))
from _dbt_helpers import AS_OF, generate_small  # noqa: E402

NEW = "whatsapp_reply"
PHRASES = ["no WhatsApp replies", "replied on WhatsApp once", "replied on WhatsApp {n} times"]
WEIGHT = 7
NEW_COLUMNS = [f"n_{NEW}_{w}d" for w in (7, 30, 90)]


def _settings(data_dir: Path) -> Settings:
    return load_settings(
        overrides={
            "paths.data_dir": str(data_dir),
            "features.max_rejected_share": 0.5,
            f"vocabulary.activity_types.{NEW}": {"engagement_weight": WEIGHT, "phrases": PHRASES},
            "training.min_positive_examples": 10,
            "training.min_negative_examples": 10,
            "training.split.validation_days": 28,
        }
    )


def _add_replies(settings: Settings) -> int:
    """WhatsApp replies a CRM export would carry: converters reply in the days before they
    convert, and some open leads replied this week (so the feature carries signal and shows up
    among the reasons of open leads)."""
    raw = settings.paths.raw_dir
    leads = pd.read_csv(raw / "leads.csv", parse_dates=["created_at"])
    conversions = pd.read_csv(raw / "conversions.csv", parse_dates=["converted_at"])
    rng = np.random.default_rng(3)
    rows = []
    for i, c in enumerate(conversions.itertuples()):
        for k in range(1 + i % 3):
            at = c.converted_at - timedelta(days=int(rng.integers(1, 20)), hours=k)
            rows.append((f"W{len(rows):07d}", c.lead_id, at.strftime("%Y-%m-%dT%H:%M:%SZ"), NEW))
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    recent = leads[(leads["created_at"] > as_of - pd.Timedelta(days=60))
                   & ~leads["lead_id"].isin(conversions["lead_id"])]
    for lead_id in recent["lead_id"].iloc[::4]:
        for k in range(2):
            at = as_of - timedelta(days=2, hours=k + 1)
            rows.append((f"W{len(rows):07d}", lead_id, at.strftime("%Y-%m-%dT%H:%M:%SZ"), NEW))
    with (raw / "activities.csv").open("a", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return len(rows)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    settings = _settings(tmp_path_factory.mktemp("vocabulary"))
    generate_small(settings)
    added = _add_replies(settings)
    built = build_warehouse(settings, as_of=datetime(2026, 11, 1))
    apply_feature_repo(settings)
    frame = build_training_set(settings, with_truth=False)
    scorer = fit_scorer(final_split(frame, settings), settings, family="logistic").scorer
    latest = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet")
    return {"settings": settings, "added": added, "built": built, "frame": frame,
            "scorer": scorer, "latest": latest, "scores": score_frame(scorer, latest, settings)}


def test_dbt_accepts_and_counts_the_new_type(pipeline: dict) -> None:
    built = pipeline["built"]
    assert built.rejected_rows["activities"] == 0  # the default vocabulary would reject them
    features = pd.read_parquet(pipeline["settings"].paths.marts_dir / "lead_features.parquet")
    assert all(c in features.columns for c in NEW_COLUMNS)
    assert features[f"n_{NEW}_90d"].sum() > 0
    assert pipeline["latest"][f"n_{NEW}_7d"].sum() > 0


def test_the_engagement_rule_weighs_the_new_type(pipeline: dict) -> None:
    vocab = pipeline["settings"].vocabulary
    latest = pipeline["latest"]
    points = sum(
        a.engagement_weight * latest[f"n_{t}_30d"] for t, a in vocab.activity_types.items()
    )
    expected = np.round(100 * (1 - np.exp(-points / 40.0)), 1)
    assert (latest[f"n_{NEW}_30d"] > 0).any()
    np.testing.assert_allclose(latest["engagement_score"], expected, atol=0.051)


def test_feast_serves_and_training_learns_the_new_counts(pipeline: dict) -> None:
    settings = pipeline["settings"]
    served = feature_names(get_store(settings), settings)
    assert all(c in served for c in NEW_COLUMNS)
    assert pipeline["frame"][f"n_{NEW}_90d"].sum() > 0
    assert all(c in pipeline["scorer"].feature_names for c in NEW_COLUMNS)


def test_scoring_words_the_new_type_from_the_settings(pipeline: dict) -> None:
    scores, latest = pipeline["scores"], pipeline["latest"]
    assert len(scores) == len(latest) and scores["score"].notna().all()
    reasons_for = " ".join(scores["reasons_for"])
    assert "replied on WhatsApp" in reasons_for
    vocab = pipeline["settings"].vocabulary
    words = wording.phrase(f"n_{NEW}_7d", 2, vocab)
    assert words == "replied on WhatsApp 2 times in the last 7 days"
