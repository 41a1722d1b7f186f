"""The fast scoring paths give exactly what the plain ones give.

- Batch: large XGBoost frames take the compiled tree walk (ml/treewalk.py) for the reasons'
  contributions; its values must be XGBoost's approximate contributions bit for bit, and a
  scoring run through it must equal the reference scorer (scores and reasons).
- Real time: `score_records` (no DataFrame) must equal `score_frame` of the same rows for every
  family: XGBoost, the own logistic regression, calibrated or not.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from _scoring_fixtures import LEVELS, awkward_features, make_features, make_scorer, reference_scores

from ml.config import Settings, load_settings
from ml.errors import DataError
from ml.linear import LinearModel
from ml.model import CATEGORICAL_FEATURES, WALK_MIN_ROWS, Calibrator, LeadScorer, feature_columns
from ml.scoring import score_frame, score_records
from ml.treewalk import TreeWalk


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


def _xgboost(max_cat_to_onehot: int, seed: int = 5) -> LeadScorer:
    """Depth-4 trees with missing values in training; `max_cat_to_onehot=1` makes categorical
    splits partitions (sets of levels), a larger value one-hot splits."""
    frame = awkward_features(1500, seed=seed)
    scorer = _blank(booster=xgb.Booster())
    dtrain = xgb.DMatrix(scorer.matrix(frame), label=_labels(make_features(1500, seed), seed),
                         feature_names=scorer.feature_names,
                         feature_types=["c" if n in scorer.categories else "q"
                                        for n in scorer.feature_names],
                         enable_categorical=True)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "nthread": 1,
              "max_cat_to_onehot": max_cat_to_onehot, "seed": seed, "subsample": 0.8}
    scorer.booster = xgb.train(params, dtrain, num_boost_round=40)
    return scorer


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


@pytest.mark.parametrize("max_cat_to_onehot", [1, 8])
def test_tree_walk_gives_xgboosts_approximate_contributions_bit_for_bit(
    max_cat_to_onehot: int,
) -> None:
    scorer = _xgboost(max_cat_to_onehot)
    walk = TreeWalk.of(scorer.booster)
    assert walk is not None and (walk.cat_start >= 0).any()  # categorical splits are walked
    x = scorer.matrix(awkward_features(3000, seed=31))
    assert np.isnan(x).any()
    expected = scorer.booster.predict(
        scorer._dmatrix(x), pred_contribs=True, approx_contribs=True)[:, :-1]
    got = walk.contributions(x)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got.view(np.int32), expected.view(np.int32))
    with pytest.raises(ValueError, match="features"):
        walk.contributions(x[:, :-1])


def test_a_large_run_through_the_tree_walk_equals_the_reference_scorer(
    settings: Settings,
) -> None:
    """A frame large enough for the walk: every score and every reason as the reference."""
    scorer = copy.copy(_xgboost(1))
    train = awkward_features(1500, seed=5)
    scorer.calibrator = Calibrator.fit(
        "isotonic", scorer.margin(train), _labels(make_features(1500, 5), 5))
    features = awkward_features(WALK_MIN_ROWS + 500, seed=41)
    expected = reference_scores(scorer, features, settings.scoring.tiers.model_dump())
    got = score_frame(scorer, features, settings)
    assert scorer._walk() is not None  # the walk answered, not XGBoost
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert (expected["reasons_against"] != "[]").mean() > 0.5


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
