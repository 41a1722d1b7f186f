"""The fast scoring paths give exactly what the plain ones give.

- Real time: `score_records` (no DataFrame) must equal `score_frame` of the same rows for every
  family: XGBoost, the own logistic regression, calibrated or not.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scoring_fixtures import LEVELS, awkward_features, make_features, make_scorer

from ml.config import Settings, load_settings
from ml.errors import DataError
from ml.linear import LinearModel
from ml.model import CATEGORICAL_FEATURES, Calibrator, LeadScorer, feature_columns
from ml.scoring import assign_tiers, score_frame, score_records


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(tmp_path)})


def _labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Labels from the clean features (`make_features`) of the same rows."""
    logit = (
        0.5 * frame["n_pricing_page_view_7d"]
        - 0.03 * frame["days_since_last_activity"].fillna(90)
        + frame["industry"].eq("Media")
        - 0.8 * frame["lead_source"].eq("Event")
        - 1.0
    )
    rng = np.random.default_rng(seed)
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)


def _blank(**kwargs: object) -> LeadScorer:
    return LeadScorer(
        feature_names=feature_columns(),
        categorical_features=list(CATEGORICAL_FEATURES),
        categories={k: sorted(v) for k, v in LEVELS.items()},
        **kwargs,  # type: ignore[arg-type]
    )


def _logistic(seed: int = 6) -> LeadScorer:
    frame = make_features(1500, seed)
    scorer = _blank()
    names = scorer.feature_names
    scorer.linear = LinearModel.fit(
        scorer.matrix(frame), _labels(frame, seed),
        categorical=[n in scorer.categories for n in names],
        n_levels=[len(scorer.categories.get(n, [])) for n in names],
        monotone=[1 if n.startswith("n_") else 0 for n in names], l2=1.0)
    scorer.family = "logistic"
    return scorer


def _records(features: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as the service holds them: Python values, None for null."""
    plain = features.astype(object).where(features.notna(), None)
    return [dict(zip(plain.columns, row, strict=True)) for row in plain.itertuples(index=False)]


@pytest.mark.parametrize("family", ["xgboost", "logistic", "xgboost-calibrated"])
def test_score_records_equals_score_frame_for_every_family(settings: Settings,
                                                           family: str) -> None:
    if family == "logistic":
        scorer = _logistic()
    else:
        scorer, train = make_scorer()
        if family == "xgboost-calibrated":
            scorer = copy.copy(scorer)
            scorer.calibrator = Calibrator.fit(
                "sigmoid", scorer.margin(train), (train["n_pricing_page_view_7d"] > 2).to_numpy())
    features = awkward_features(600, seed=23)
    # The input matrix of the service's records equals the frame's, even for awkward values
    # (numbers as text, unseen levels, ...), bit for bit.
    np.testing.assert_array_equal(scorer.matrix_records(_records(features)),
                                  scorer.matrix(features))
    features["website_visits"] = pd.to_numeric(features["website_visits"])  # service: numbers
    expected = score_frame(scorer, features, settings)
    records = _records(features)
    batch = pd.DataFrame(score_records(scorer, records[:50], settings))
    pd.testing.assert_frame_equal(batch, expected.iloc[:50], check_exact=True)
    for i in range(0, 600, 7):  # one lead per call, the service's usual shape
        (one,) = score_records(scorer, [records[i]], settings)
        assert one == expected.iloc[i].to_dict()
    assert (expected["reasons_for"] != "[]").mean() > 0.5


def test_score_records_names_the_features_a_lead_lacks(settings: Settings) -> None:
    scorer, _ = make_scorer()
    record = _records(make_features(1))[0]
    del record["industry"], record["n_email_open_7d"]
    with pytest.raises(DataError, match="industry, n_email_open_7d"):
        score_records(scorer, [record], settings)


def test_tiers_of_a_few_leads_equal_the_batch_tiers(settings: Settings) -> None:
    t = settings.scoring.tiers
    edges = [t.A, t.B, t.C]
    score = np.array([*edges, *np.nextafter(edges, -np.inf), 0.0, 100.0, np.nan,
                      *np.random.default_rng(3).uniform(0, 100, 200)])
    batch = assign_tiers(score, settings)
    assert batch.dtype == np.dtype("<U1") and set(batch) == {"A", "B", "C", "D"}
    few = np.concatenate([assign_tiers(score[i:i + 3], settings) for i in range(0, len(score), 3)])
    np.testing.assert_array_equal(few, batch)
    assert few.dtype == batch.dtype
