"""Every endpoint and error case, id-only and full payloads, batch/online agreement."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from serving_stack import Aliases

from ml.feature_store import online_features
from ml.scoring import score_frame
from ml.serving.schemas import ORIGINAL_EXAMPLE, PredictResponse

KNOWN = "L0000001"


def test_predict_by_id_scores_from_the_online_store(client):
    r = client.post("/predict", json={"lead_id": KNOWN})
    assert r.status_code == 200
    body = r.json()
    assert body["lead_id"] == KNOWN
    assert 0 <= body["score"] <= 100 and body["score"] == round(body["probability"] * 100, 1)
    assert body["tier"] in "ABCD"
    assert body["model_name"] == "lead_scoring" and body["model_version"] == "1"
    assert body["variant"] == "champion"
    assert 1 <= len(body["reasons"]) <= 3 and all(isinstance(p, str) for p in body["reasons"])
    src = body["feature_sources"]
    assert src["in_online_store"] and src["from_request"] == []
    assert len(src["from_online_store"]) + len(src["missing"]) == 41
    assert body["scored_by"] == "full" and body["warnings"] == []
    assert PredictResponse.model_validate(body).model_dump() == body


def test_a_lead_the_store_does_not_know_is_scored_from_the_request(client):
    body = client.post("/predict", json=ORIGINAL_EXAMPLE).json()
    assert body["scored_by"] == "request" and body["warnings"] == []
    assert PredictResponse.model_validate(body).model_dump() == body


def test_original_payload_is_accepted_verbatim_for_an_unknown_lead(client):
    r = client.post("/predict", json=ORIGINAL_EXAMPLE)
    assert r.status_code == 200
    src = r.json()["feature_sources"]
    assert not src["in_online_store"]
    assert src["from_request"] == sorted(set(ORIGINAL_EXAMPLE) - {"lead_id"})
    assert src["from_online_store"] == [] and "country" in src["missing"]


def test_request_fields_win_over_the_online_store(client, stack, scorers):
    payload = {**ORIGINAL_EXAMPLE, "lead_id": KNOWN}
    body = client.post("/predict", json=payload).json()
    assert body["feature_sources"]["in_online_store"]
    assert "engagement_score" in body["feature_sources"]["from_request"]
    assert "engagement_score" not in body["feature_sources"]["from_online_store"]
    features = online_features(stack, [KNOWN])
    for name, value in ORIGINAL_EXAMPLE.items():
        if name != "lead_id":
            features[name] = [value]
    expected = score_frame(scorers[1], features, stack).iloc[0]
    assert body["score"] == expected["score"]
    assert body["reasons"] == json.loads(expected["reasons_for"])


def test_id_only_request_for_an_unknown_lead_is_404(client):
    r = client.post("/predict", json={"lead_id": "no-such-lead"})
    assert r.status_code == 404
    assert "no-such-lead" in r.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"lead_id": KNOWN, "company_size": -1}, "company_size"),
        ({"lead_id": KNOWN, "engagement_score": "high"}, "engagement_score"),
        ({"lead_id": KNOWN, "engagement_score": 101}, "engagement_score"),
        ({"lead_id": KNOWN, "website_visits": 1.5}, "website_visits"),
        ({"industry": "Technology"}, "lead_id"),
        ({"lead_id": ""}, "lead_id"),
        ({"lead_id": KNOWN, "budget": 5}, "budget"),
    ],
)
def test_invalid_payload_is_422_naming_the_field(client, payload, field):
    r = client.post("/predict", json=payload)
    assert r.status_code == 422
    body = r.json()
    assert field in body["detail"]
    assert field in {e["field"] for e in body["errors"]}


def test_malformed_json_is_422_without_a_traceback(client):
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "Traceback" not in r.text


def test_batch_scores_known_and_reports_unknown_leads(client):
    leads = [{"lead_id": f"L{i:07d}"} for i in range(20)] + [{"lead_id": "ghost"}, ORIGINAL_EXAMPLE]
    r = client.post("/predict/batch", json={"leads": leads})
    assert r.status_code == 200
    body = r.json()
    assert body["not_found"] == ["ghost"]
    assert [p["lead_id"] for p in body["predictions"]] == [f"L{i:07d}" for i in range(20)] + [
        "lead-123"
    ]


def test_batch_over_the_limit_is_422(make_client):
    client = make_client(batch_limit=5)
    r = client.post("/predict/batch", json={"leads": [{"lead_id": KNOWN}] * 6})
    assert r.status_code == 422 and "batch_limit" in r.json()["detail"]
    assert client.post("/predict/batch", json={"leads": []}).status_code == 422


def test_batch_and_online_scores_agree(client, stack, scorers):
    """The same leads score identically through the API and through batch scoring, whether
    batch reads the online store (Feast SDK) or the mart it was refreshed from."""
    ids = [f"L{i:07d}" for i in range(60)]
    api = pd.DataFrame(
        client.post("/predict/batch", json={"leads": [{"lead_id": i} for i in ids]}).json()[
            "predictions"
        ]
    )
    via_feast = score_frame(scorers[1], online_features(stack, ids), stack)
    mart = pd.read_parquet(stack.paths.marts_dir / "lead_features_latest.parquet")
    via_mart = score_frame(scorers[1], mart.set_index("lead_id").loc[ids].reset_index(), stack)
    for batch in (via_feast, via_mart):
        assert api["score"].tolist() == batch["score"].tolist()
        assert api["probability"].tolist() == batch["probability"].tolist()
        assert api["tier"].tolist() == batch["tier"].tolist()
        assert api["reasons"].tolist() == [json.loads(x) for x in batch["reasons_for"]]
        assert api["reasons_against"].tolist() == [json.loads(x) for x in batch["reasons_against"]]


def test_health_ready_model_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["champion"] == "1"
    model = client.get("/model").json()
    assert model["mode"] == "shadow"
    assert model["champion"]["version"] == "1" and model["challenger"]["version"] == "2"
    invalid = 'lead_scoring_errors_total{endpoint="/predict",kind="invalid_payload"}'

    def invalid_count() -> float:
        # counters are process-wide: other tests' errors count too, so compare before/after
        line = next(
            (x for x in client.get("/metrics").text.splitlines() if x.startswith(invalid)), ""
        )
        return float(line.split()[-1]) if line else 0.0

    before = invalid_count()
    client.post("/predict", json={"lead_id": KNOWN})
    client.post("/predict", json={"lead_id": KNOWN, "company_size": -5})
    text = client.get("/metrics").text
    assert (
        'lead_scoring_requests_total{endpoint="/predict",model_version="1",status="200",'
        'variant="champion"}'
    ) in text
    assert 'lead_scoring_request_latency_seconds_bucket{endpoint="/predict"' in text
    assert invalid_count() > before
    assert 'lead_scoring_model_version{alias="champion"} 1.0' in text


def test_no_model_loaded_is_503_and_not_ready(make_client):
    client = make_client(aliases=Aliases(champion=None, challenger=None), ready=False)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    r = client.post("/predict", json={"lead_id": KNOWN})
    assert r.status_code == 503 and "no model" in r.json()["detail"]


def test_openapi_documents_the_original_payload(client):
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictRequest"]
    assert ORIGINAL_EXAMPLE in request["examples"]
    assert {"/predict", "/predict/batch", "/health", "/ready", "/model", "/metrics"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_a_real_scoring_failure_is_a_plain_500(scorers, stack, tmp_path):
    """A model that needs a feature the online store does not serve fails inside scoring; the
    500 says so in fixed words, and the cause (naming columns and the feature service) only
    goes to the log."""
    from dataclasses import replace

    from conftest import serving_settings, wait_ready
    from fastapi.testclient import TestClient

    from ml.serving.app import create_app

    names = [n if n != "email_opens" else "email_opens_v2" for n in scorers[1].feature_names]
    broken = replace(scorers[1], feature_names=names)
    app = create_app(serving_settings(stack, tmp_path, mode="off"),
                     loader=lambda s, v: broken if v == 1 else scorers[v], alias_lookup=Aliases())
    with TestClient(app, raise_server_exceptions=False) as client:  # answer as in production
        wait_ready(client)
        r = client.post("/predict", json={"lead_id": KNOWN})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error; the service log has the details"}
    assert "email_opens_v2" not in r.text and "feature service" not in r.text


def test_the_direct_predict_path_answers_as_the_fastapi_route(client):
    """A well-formed POST /predict skips FastAPI's routing (ml/serving/app.py `_Service`); its
    answers equal the route's, and anything it does not handle goes through FastAPI."""
    app = client.app
    direct = app.direct
    taken: list[bool] = []

    async def counting(scope, body, send):
        taken.append(await direct(scope, body, send))
        return taken[-1]

    payloads = [{"lead_id": KNOWN}, ORIGINAL_EXAMPLE, {"lead_id": "no-such-lead"},
                {"lead_id": KNOWN, "company_size": -1}, {"industry": "Technology"}]
    app.direct = counting
    try:
        fast = [client.post("/predict", json=p) for p in payloads]
        broken = client.post("/predict", content=b'{"lead_id": ',
                             headers={"content-type": "application/json"})
        app.direct = None  # FastAPI's route for everything
        slow = [client.post("/predict", json=p) for p in payloads]
    finally:
        app.direct = direct
    assert taken == [True, True, True, False, False, False]
    for a, b in zip(fast, slow, strict=True):
        assert (a.status_code, a.headers["content-type"]) == (b.status_code,
                                                               b.headers["content-type"])
        assert a.json() == b.json()
    assert broken.status_code == 422 and broken.json()["detail"] == "invalid request: body"
    assert broken.json()["errors"][0]["message"] == "not valid JSON at character 12"
