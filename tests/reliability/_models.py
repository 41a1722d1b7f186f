"""A small logistic-regression LeadScorer for the kill tests.

Linear on purpose: scoring it needs no OpenMP, so it runs safely in a forked child even when
XGBoost already started its thread pool in the test process (a forked child inherits the pool's
lock but not its threads, and hangs in the first parallel region).
"""

from __future__ import annotations

import functools

import numpy as np
from _scoring_fixtures import LEVELS, make_features

from ml.linear import LinearModel
from ml.model import CATEGORICAL_FEATURES, LeadScorer, feature_columns


@functools.cache
def linear_scorer(seed: int = 0, n: int = 600) -> LeadScorer:
    frame = make_features(n, seed)
    rng = np.random.default_rng(seed + 1)
    logit = 0.6 * frame["n_pricing_page_view_7d"] - 0.03 * frame[
        "days_since_last_activity"].fillna(90) + (frame["lead_source"] == "Partner agent") - 1.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    scorer = LeadScorer(
        feature_names=feature_columns(),
        categorical_features=list(CATEGORICAL_FEATURES),
        categories={k: sorted(v) for k, v in LEVELS.items()},
        booster=None,
        family="logistic",
    )
    names = scorer.feature_names
    scorer.linear = LinearModel.fit(
        scorer.matrix(frame), label, categorical=[c in scorer.categories for c in names],
        n_levels=[len(scorer.categories.get(c, [])) for c in names], monotone=[0] * len(names))
    return scorer
