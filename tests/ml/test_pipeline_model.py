"""The model on the real pipeline: generated data → dbt → Feast training set → backtest.

These are the guarantees of the training issue, checked on generated data where the true
conversion probability (the oracle) is known.
"""

import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ml.config import load_settings
from ml.model import LABEL
from ml.registry import current_version, promote
from ml.retrain import ORACLE, promote_challenger, train_challenger
from ml.train import snapshot_dates, split_by_time
from ml.training_set import build_training_set


@pytest.fixture(scope="module")
def training_frame(pipeline_settings, feature_store):
    return build_training_set(pipeline_settings)


@pytest.fixture(scope="module")
def challenger(pipeline_settings, training_frame):
    return train_challenger(pipeline_settings, training_frame, actor="test")


def test_training_set_features_are_the_mart_row_of_each_snapshot(pipeline_settings, training_frame):
    """Feast's point-in-time join returns, for each (lead, snapshot), exactly the mart row of that
    snapshot: no later snapshot of the same lead leaks into an earlier row."""
    mart = pd.read_parquet(pipeline_settings.paths.marts_dir / "lead_features.parquet")
    mart["event_timestamp"] = pd.to_datetime(mart["snapshot_ts"], utc=True)
    sample = training_frame.sample(500, random_state=0)
    joined = sample.merge(mart, on=["lead_id", "event_timestamp"], suffixes=("", "_mart"))
    assert len(joined) == len(sample)
    for column in (
        "n_pricing_page_view_7d",
        "n_meeting_booked_30d",
        "engagement_score",
        "days_since_created",
        "website_visits",
    ):
        np.testing.assert_array_equal(
            joined[column].to_numpy(float), joined[f"{column}_mart"].to_numpy(float)
        )


def test_splits_are_ordered_in_time(pipeline_settings, training_frame):
    split = split_by_time(training_frame, pipeline_settings)
    assert snapshot_dates(split.train).max() < snapshot_dates(split.validation).min()
    assert snapshot_dates(split.validation).max() < snapshot_dates(split.test).min()


def test_backtest_structure_and_the_best_family_wins(pipeline_settings, challenger):
    """The figures come from ≥ 4 weekly out-of-time folds; the champion family is the best by
    mean AUC, reaches most of the oracle's lift and beats the hand-weighted rule."""
    b = challenger.summary()["backtest"]
    assert len(b["folds"]) == pipeline_settings.training.backtest.folds >= 4
    assert b["embargo_days"] >= pipeline_settings.features.label_window_days
    origins = [f["origin"] for f in b["folds"]]
    assert origins == sorted(origins) and len(set(origins)) == len(origins)
    means = {f: v["auc_mean"] for f, v in b["families"].items()}
    assert set(means) == {"xgboost", "logistic", "rules"}
    assert b["auc_mean"] >= max(means.values()) - pipeline_settings.training.tie_tolerance, b
    assert b["auc_mean"] >= b["baseline_rules_auc_mean"] + 0.02, b
    assert b["auc_ci95"][0] <= b["auc_mean"] <= b["auc_ci95"][1]
    assert b["lift_share_of_oracle_mean"] >= 0.80, b
    for fold in b["folds"]:
        assert 0.5 < fold["auc"] <= fold["oracle_auc"] + 0.02, fold
    # the request model on the test windows' new leads, against the rules on the same rows
    request = b["request_model"]
    assert request["new_lead_days"] == pipeline_settings.training.request_new_lead_days
    assert request["auc_mean"] > request["baseline_rules_auc_mean"] + 0.01, request
    assert challenger.training.scorer.request_scorer is not None
    assert challenger.training.scorer.family == b["champion_family"]


def test_retraining_on_the_same_data_is_deterministic(
    pipeline_settings, training_frame, challenger
):
    again = train_challenger(pipeline_settings, training_frame, actor="test")
    assert again.metrics == challenger.metrics
    assert again.training.scorer.model_bytes() == challenger.training.scorer.model_bytes()


def test_gate_refuses_a_model_trained_on_shuffled_labels(pipeline_settings, training_frame):
    first = promote_challenger(pipeline_settings, reason="test", actor="test")
    assert first.accepted, first.message
    champion = current_version(pipeline_settings)

    shuffled = training_frame.copy()
    shuffled[LABEL] = np.random.default_rng(0).permutation(shuffled[LABEL].to_numpy())
    shuffled = shuffled.drop(columns=[ORACLE])
    noise = train_challenger(pipeline_settings, shuffled, actor="test:shuffled")
    decision = promote(pipeline_settings, noise.version.version, reason="test", actor="test")
    assert not decision.accepted
    assert "min_auc" in decision.message
    assert current_version(pipeline_settings) == champion


def test_training_set_hash_is_the_version_tag(pipeline_settings, training_frame, challenger):
    from ml.registry import mlflow_client
    from ml.training_set import fingerprint

    version = mlflow_client(pipeline_settings).get_model_version(
        pipeline_settings.registry.model_name, str(challenger.version.version)
    )
    assert version.tags["training_fingerprint"] == fingerprint(training_frame).content_hash


# --- the request model (cold start) ---------------------------------------------------------

REQUEST_FIELDS = ("lead_source", "industry", "country", "license_type", "budget_band",
                  "company_size", "visa_quota", "engagement_score", "website_visits",
                  "email_opens")
NOT_GIVEN_WORDS = ("not given", "unknown", "Carrier pigeon")


def _request_score(scorer, payloads):
    from ml.request import request_frame
    from ml.scoring import score_frame

    frame, _ = request_frame(scorer, payloads)
    frame["lead_id"] = [f"new-{i}" for i in range(len(payloads))]
    return score_frame(scorer, frame, load_settings())


PROPERTY = hypothesis_settings(max_examples=60, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])
payload_strategy = st.fixed_dictionaries({}, optional={
    "lead_source": st.sampled_from(["Web", "Referral", "Event", "Walk-in", "Carrier pigeon"]),
    "industry": st.sampled_from(["Technology", "Trading", "Tourism", "Space mining"]),
    "country": st.sampled_from(["India", "United Kingdom", "Atlantis"]),
    "license_type": st.sampled_from(["Commercial", "Freelance"]),
    "budget_band": st.sampled_from(["<25k", "100k+"]),
    "company_size": st.integers(0, 5000),
    "visa_quota": st.integers(0, 200),
    "engagement_score": st.floats(0, 100),
    "website_visits": st.integers(0, 200),
    "email_opens": st.integers(0, 200),
})


@PROPERTY
@given(payload=payload_strategy, more_engagement=st.floats(0, 50), more_visits=st.integers(0, 30),
       more_opens=st.integers(0, 30))
def test_more_engagement_never_lowers_a_new_leads_score(challenger, payload, more_engagement,
                                                          more_visits, more_opens):
    scorer = challenger.training.scorer.request_scorer
    more = dict(payload)
    more["engagement_score"] = min(100.0, payload.get("engagement_score", 0.0) + more_engagement)
    more["website_visits"] = payload.get("website_visits", 0) + more_visits
    more["email_opens"] = payload.get("email_opens", 0) + more_opens
    base, bumped = _request_score(scorer, [payload, more])["score"]
    assert bumped >= base, (payload, more)


@PROPERTY
@given(payload=payload_strategy)
def test_missing_or_unknown_values_are_never_reasons(challenger, payload):
    from ml.request import unknown_categories

    scorer = challenger.training.scorer.request_scorer
    out = _request_score(scorer, [payload]).iloc[0]
    assert 0 <= out["score"] < 100
    words = json.loads(out["reasons_for"]) + json.loads(out["reasons_against"])
    assert not [w for w in words if any(bad in w for bad in NOT_GIVEN_WORDS)], (payload, words)
    assert not [w for w in words if "%" in w and int(w.split("%")[0].split()[-1]) > 100]
    for name in ("lead_source", "industry", "country"):
        if payload.get(name) in ("Carrier pigeon", "Space mining", "Atlantis"):
            assert any(name in w for w in unknown_categories(scorer, payload))


def test_a_request_with_a_stored_new_leads_fields_scores_like_that_lead(
        pipeline_settings, challenger):
    from ml.scoring import score_frame

    scorer = challenger.training.scorer.request_scorer
    mart = pd.read_parquet(pipeline_settings.paths.marts_dir / "lead_features.parquet")
    new = mart[mart["days_since_created"] == 0].head(50).reset_index(drop=True)
    assert len(new) >= 10
    payloads = [{k: (None if pd.isna(row[k]) else row[k]) for k in REQUEST_FIELDS}
                for _, row in new.iterrows()]
    from_request = _request_score(scorer, payloads)
    stored = score_frame(scorer, new, pipeline_settings)
    np.testing.assert_allclose(from_request["score"], stored["score"], atol=1e-9)
    assert (from_request["reasons_for"].to_numpy() == stored["reasons_for"].to_numpy()).all()


def test_the_service_scores_new_and_known_leads_sensibly(pipeline_settings, challenger):
    """The README's example and its variants, through the real service on the pipeline's
    stores: a new lead answered by the request model with reasons that name what was given;
    a known lead's stored values sent in the request score as its id alone does."""
    from fastapi.testclient import TestClient

    from ml.registry import current_version, promote
    from ml.scoring import score_frame
    from ml.serving.app import create_app
    from ml.serving.schemas import ORIGINAL_EXAMPLE

    if current_version(pipeline_settings) is None:
        promote(pipeline_settings, reason="test", actor="test")
    latest = pd.read_parquet(pipeline_settings.paths.marts_dir / "lead_features_latest.parquet")
    known = latest.iloc[0]
    with TestClient(create_app(pipeline_settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        new = client.post("/predict", json=ORIGINAL_EXAMPLE).json()
        # plausible: below the best stored lead's score (on the default data it lies in the
        # stored leads' top 2 %, as the oracle says such a first-week lead should; see the note
        # in docs/case-study/deployment.md)
        stored = score_frame(challenger.training.scorer, latest, pipeline_settings)["score"]
        assert new["scored_by"] == "request", new
        assert new["score"] < min(99, stored.max()), (new, stored.max())
        assert new["feature_sources"]["assumed"] == []
        bare = client.post("/predict", json={"lead_id": "form-2", "lead_source": "Web"}).json()
        assert set(bare["feature_sources"]["assumed"]) == {
            "engagement_score", "website_visits", "email_opens"}
        assert bare["score"] < new["score"]
        words = new["reasons"] + new["reasons_against"]
        assert not [w for w in words if "not given" in w], new
        pigeon = client.post("/predict", json={**ORIGINAL_EXAMPLE,
                                                "lead_source": "Carrier pigeon"}).json()
        assert any("Carrier pigeon" in w for w in pigeon["warnings"]), pigeon
        assert not [w for w in pigeon["reasons"] + pigeon["reasons_against"]
                    if "Carrier pigeon" in w or "lead source" in w]
        by_id = client.post("/predict", json={"lead_id": known["lead_id"]}).json()
        assert by_id["scored_by"] == "full"
        full = {k: (None if pd.isna(known[k]) else known[k].item()
                    if hasattr(known[k], "item") else known[k]) for k in REQUEST_FIELDS}
        sent = client.post("/predict", json={"lead_id": known["lead_id"],
                                             **{k: v for k, v in full.items() if v is not None}})
        assert abs(sent.json()["score"] - by_id["score"]) <= 0.5
        assert client.post("/predict", json={"lead_id": "nobody"}).status_code == 404
