"""The compiled tree walker of batch scoring (ml/fast_trees.py) gives exactly what XGBoost gives.

Bit-for-bit margins and approximate contributions, hence the same scores, tiers and reasons as
the reference scorer (`reference_scores`: XGBoost's predict and pred_contribs on the pandas-
prepared frame), on a few thousand generated leads with nulls, unseen levels, categorical
partition splits, missing values sent either way, exact ties between reasons, and the rules that
drop an absence from the reasons for and a favourable value from the reasons against.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from _scoring_fixtures import LEVELS, awkward_features, make_features, reference_scores

from ml import fast_trees, reasons, scoring, wording
from ml.config import Settings, load_settings
from ml.model import CATEGORICAL_FEATURES, Calibrator, LeadScorer, feature_columns

pytestmark = pytest.mark.skipif(not fast_trees.available(), reason="numba is not installed")

# Two windows of one activity and a lone count: in the tie model they get equal contributions.
TWIN_A, TWIN_B = "n_webinar_30d", "website_visits"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(tmp_path)})


def _trained(seed: int = 4, rounds: int = 60) -> tuple[LeadScorer, pd.DataFrame]:
    """A depth-4 model like the configured one, with partition splits on every categorical
    (max_cat_to_onehot=1) and nulls in training, so missing values go left and right."""
    frame = awkward_features(1500, seed)
    scorer = LeadScorer(
        feature_names=feature_columns(),
        categorical_features=list(CATEGORICAL_FEATURES),
        categories={k: sorted(v) for k, v in LEVELS.items()},
        booster=xgb.Booster(),
    )
    prepared = scorer.prepare(frame)
    logit = (
        0.5 * prepared["n_pricing_page_view_7d"].fillna(0)
        - 0.03 * prepared["days_since_last_activity"].fillna(90)
        - 1.5 * prepared["days_since_last_activity"].lt(4)  # "active today" pulls down: a rule
        + prepared["industry"].eq("Media").astype(float)
        - 0.8 * prepared["lead_source"].isin(["Event", "Web"]).astype(float)
        + 0.4 * prepared["budget_band"].eq("100k+").astype(float)
        + 0.3 * prepared["n_webinar_30d"].fillna(0)
        - 0.6 * prepared["engagement_score"].isna()
        - 1.0
    )
    label = (np.random.default_rng(seed).random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "max_cat_to_onehot": 1,
              "tree_method": "hist", "nthread": 1, "seed": seed}
    dtrain = xgb.DMatrix(prepared, label=label, enable_categorical=True)
    scorer.booster = xgb.train(params, dtrain, rounds)
    return scorer, frame


def _twin_model(scorer: LeadScorer) -> LeadScorer:
    """Every tree twice: as trained, and with TWIN_A's splits moved to TWIN_B. For a lead with
    the same value in both, the two get exactly equal contributions: a tie among reasons."""
    model = json.loads(scorer.booster.save_raw("json"))
    gbm = model["learner"]["gradient_booster"]["model"]
    a, b = scorer.feature_names.index(TWIN_A), scorer.feature_names.index(TWIN_B)
    twins = []
    for tree in gbm["trees"]:
        if a not in tree["split_indices"] or b in tree["split_indices"]:
            continue
        twin = copy.deepcopy(tree)
        twin["split_indices"] = [b if f == a else f for f in tree["split_indices"]]
        twins += [tree, twin]
    assert len(twins) >= 4
    for i, tree in enumerate(twins):
        tree["id"] = i
    gbm["trees"] = twins
    gbm["tree_info"] = [0] * len(twins)
    gbm["iteration_indptr"] = list(range(len(twins) + 1))
    gbm["gbtree_model_param"]["num_trees"] = str(len(twins))
    out = copy.copy(scorer)
    out.booster = xgb.Booster()
    out.booster.load_model(bytearray(json.dumps(model).encode()))
    return out


def _xgboost(scorer: LeadScorer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    margin, contribs, _ = scorer.margin_and_contributions_of(x, mask_missing=True)
    return margin, contribs


def test_margin_and_contributions_equal_xgboost_bit_for_bit() -> None:
    scorer, _ = _trained()
    x = scorer.matrix(awkward_features(4000, seed=31))
    assert np.isnan(x).mean() > 0.05  # nulls and unseen levels
    cats = [scorer.feature_names.index(c) for c in CATEGORICAL_FEATURES]
    tree_json = json.loads(scorer.booster.save_raw("json"))
    split_types = [t for tree in tree_json["learner"]["gradient_booster"]["model"]["trees"]
                   for t in tree["split_type"]]
    assert 1 in split_types  # partition splits on categoricals are walked too
    assert np.isnan(x[:, cats]).any()
    margin, contribs = fast_trees.margin_and_contributions(scorer.booster, x, mask_missing=True)
    want_margin, want_contribs = _xgboost(scorer, x)
    assert np.array_equal(margin, want_margin)
    assert np.array_equal(contribs, want_contribs)
    assert contribs.dtype == want_contribs.dtype == np.float32
    # unmasked, too (a missing input's own path contribution kept)
    _, raw = fast_trees.margin_and_contributions(scorer.booster, x)
    full = scorer.booster.predict(scorer._dmatrix(x), pred_contribs=True, approx_contribs=True)
    assert np.array_equal(raw, full[:, :-1])


def test_the_few_leads_kernel_equals_xgboost_bit_for_bit(settings: Settings) -> None:
    """The service's walker (one thread, up to SERIAL_ROWS leads, compiled by `warm_up` off
    the request path) gives XGBoost's numbers, and `score_records` uses it once warm."""
    scorer, _ = _trained()
    assert fast_trees.warm_up(scorer.booster, len(scorer.feature_names))
    assert fast_trees.serial_ready()
    features = awkward_features(300, seed=41)
    x = scorer.matrix(features)
    want_margin, want_contribs = _xgboost(scorer, x)
    for rows in [slice(i, i + 1) for i in range(0, 300, 3)] + [slice(0, fast_trees.SERIAL_ROWS)]:
        margin, contribs = fast_trees.margin_and_contributions(scorer.booster, x[rows],
                                                               mask_missing=True)
        assert np.array_equal(margin, want_margin[rows])
        assert np.array_equal(contribs, want_contribs[rows])
    walked = []
    real = fast_trees.margin_and_contributions
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_trees, "margin_and_contributions",
                   lambda *a, **k: walked.append(1) or real(*a, **k))
        records = features.astype(object).where(features.notna(), None).to_dict("records")
        (one,) = scoring.score_records(scorer, records[:1], settings)
    assert walked and one == scoring.score_frame(scorer, features.iloc[:1], settings).iloc[
        0].to_dict()


@pytest.mark.parametrize("calibrated", [False, True])
def test_batch_scores_and_reasons_equal_the_reference_scorer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, calibrated: bool
) -> None:
    """score_frame (the batch path, walker on) against the reference scorer, including exact
    ties between two reasons and the absence/favourable rules."""
    base, train = _trained()
    scorer = _twin_model(base)
    if calibrated:
        scorer.calibrator = Calibrator.fit(
            "isotonic", scorer.margin(train),
            pd.to_numeric(train["n_pricing_page_view_7d"]).gt(2).to_numpy())
    features = awkward_features(3000, seed=41)
    # half the leads carry the same value in both twins: their contributions tie exactly
    same = np.random.default_rng(5).random(len(features)) < 0.5
    twin_values = features[TWIN_A].astype(object).to_numpy()
    values = features[TWIN_B].astype(object).to_numpy()
    values[same] = [None if v is None else str(int(v)) for v in twin_values[same]]
    features[TWIN_B] = values
    features = pd.concat([features, features.head(200).assign(
        lead_id=[f"D{i:07d}" for i in range(200)])], ignore_index=True)  # duplicate leads

    x = scorer.matrix(features)
    want_margin, want_contribs = _xgboost(scorer, x)
    margin, contribs = fast_trees.margin_and_contributions(scorer.booster, x, mask_missing=True)
    assert np.array_equal(margin, want_margin) and np.array_equal(contribs, want_contribs)

    # the comparison is not vacuous: ties among the chosen reasons, and both rules at work
    names = scorer.feature_names
    grouped, groups = reasons.grouped_contributions(contribs, names, features)
    raw = np.stack([contribs[:, list(g)].sum(axis=1) for g in groups], axis=1)
    col_a = next(i for i, g in enumerate(groups) if names.index(TWIN_A) in g)
    col_b = next(i for i, g in enumerate(groups) if names.index(TWIN_B) in g)
    tied = (contribs[:, names.index(TWIN_A)] == contribs[:, names.index(TWIN_B)]) & (
        np.abs(contribs[:, names.index(TWIN_A)]) > reasons.MIN_CONTRIBUTION)
    assert tied.sum() > 100
    assert ((raw > 0) & (grouped == 0)).any(axis=1).sum() > 20  # an absence dropped from "for"
    assert ((raw < 0) & (grouped == 0)).any(axis=1).sum() > 10  # favourable: not "against"
    assert col_a != col_b

    monkeypatch.setattr(scoring, "COMPILED_MIN_ROWS", 0)
    walked = []
    real = fast_trees.margin_and_contributions
    monkeypatch.setattr(fast_trees, "margin_and_contributions",
                        lambda *a, **k: walked.append(1) or real(*a, **k))
    got = scoring.score_frame(scorer, features, settings)
    assert walked  # the batch path did use the walker
    expected = reference_scores(scorer, features, settings.scoring.tiers.model_dump())
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # a tie shows in the reasons: the twins' phrases side by side for many leads
    phrase_a = wording.phrase(TWIN_A, 1).split(" in the last ")[0].split()[0]
    both = [r for r in got["reasons_for"][tied] if "website" in r and phrase_a in r]
    assert len(both) > 20


def test_models_the_walker_does_not_cover_are_scored_by_xgboost(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = make_features(400, seed=2)
    linear_booster = xgb.train(
        {"booster": "gblinear", "objective": "binary:logistic", "nthread": 1},
        xgb.DMatrix(frame[["company_size", "visa_quota"]].astype(float),
                    label=(frame["visa_quota"] > 2).astype(int)), 5)
    with pytest.raises(fast_trees.Unsupported, match="gblinear"):
        fast_trees.compile_trees(linear_booster)
    scorer, _ = _trained(rounds=5)
    x = scorer.matrix(frame)
    x[0, scorer.feature_names.index("company_size")] = np.inf
    with pytest.raises(fast_trees.Unsupported, match="infinite"):
        fast_trees.margin_and_contributions(scorer.booster, x)
    monkeypatch.setattr(scoring, "COMPILED_MIN_ROWS", 0)
    monkeypatch.setattr(fast_trees, "MAX_DEPTH", 2)  # too shallow for this model: XGBoost
    monkeypatch.setattr(fast_trees, "_compiled", type(fast_trees._compiled)())
    got = scoring.score_frame(scorer, frame, settings)
    expected = reference_scores(scorer, frame, settings.scoring.tiers.model_dump())
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_latest_features_read_as_categoricals_score_the_same(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch reads the mart's categorical attributes as pandas categoricals; scores and
    reasons equal those of the same rows read as plain strings."""
    from ml.batch import load_latest_features

    scorer, _ = _trained(rounds=20)
    features = make_features(2500, seed=8)
    features.loc[features.index % 11 == 0, "industry"] = None
    features.loc[features.index % 13 == 0, "country"] = "Atlantis"  # unseen level
    path = settings.paths.data_dir / "latest.parquet"
    features.to_parquet(path, index=False)
    read = load_latest_features(settings, path)
    assert isinstance(read["industry"].dtype, pd.CategoricalDtype)
    monkeypatch.setattr(scoring, "COMPILED_MIN_ROWS", 0)
    got = scoring.score_frame(scorer, read, settings)
    expected = reference_scores(scorer, pd.read_parquet(path),
                                settings.scoring.tiers.model_dump())
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_the_two_kernels_never_share_numbas_disk_cache() -> None:
    """numba keys its on-disk cache by function name, line and signature, not by `parallel`: one
    function behind both kernels would let the batch load the service's one-thread machine code
    (or the service the thread pool's) from the cache."""
    paths = {fast_trees._kernel(serial)._cache._cache_file._index_path for serial in (True, False)}
    assert len(paths) == 2
