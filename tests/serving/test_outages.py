"""The service against real outages of its dependencies, while it runs.

Each test copies the session's stack into its own folder and breaks the copy for real: the
MLflow SQLite registry moved away or overwritten with garbage, the Feast online store locked by
another connection or its tables gone. Nothing is stubbed on the failing side: the registry
tests use the service's own registry lookup and loader; the online-store tests read through
Feast's SQLite online store.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_stack import Aliases

from ml.config import Settings, load_settings
from ml.feature_store import ONLINE_STORE_FILE
from ml.serving.app import STORE_DEGRADED, STORE_UNAVAILABLE, create_app
from ml.serving.predictor import STORE_DOWN_WARNING
from ml.serving.schemas import ORIGINAL_EXAMPLE

KNOWN = "L0000001"
TABLES = ("lead_scoring_lead_engagement", "lead_scoring_lead_profile")


def copy_stack(stack: Settings, tmp_path: Path, **serving: object) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(stack.paths.data_dir, data, ignore=shutil.ignore_patterns("serving"))
    return load_settings(overrides={
        "paths.data_dir": str(data),
        "serving.prediction_log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "serving.poll_interval_seconds": 3600,  # the tests poll themselves (refresh())
        **{f"serving.{k}": v for k, v in serving.items()},
    })


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def assert_no_internals(text: str, settings: Settings) -> None:
    for leak in (str(settings.paths.data_dir), "sqlite", ".db", "Traceback", "Error:",
                 "Exception"):
        assert leak not in text, f"{leak!r} leaked into a response: {text}"


@pytest.fixture()
def registry_client(stack: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = copy_stack(stack, tmp_path)
    with TestClient(create_app(settings)) as client:  # the real registry lookup and loader
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield client, settings


@pytest.mark.parametrize("outage", ["moved away", "garbage"])
def test_registry_outage_keeps_serving_the_loaded_model(registry_client, outage):
    client, settings = registry_client
    manager = client.app.state.manager
    assert client.get("/ready").json() == {"status": "ready", "champion": "1", "reasons": []}
    db = Path(settings.paths.mlflow_tracking_uri.removeprefix("sqlite:///"))
    saved = db.read_bytes()
    if outage == "moved away":
        db.rename(db.with_name("mlflow.db.aside"))
    else:  # overwritten in place: connections MLflow keeps open read the garbage too
        db.write_bytes(b"not a database " * 1000)

    for _ in range(2):
        state = manager.refresh()
    assert state.champion.version == 1 and state.failed_polls == 2
    if outage == "moved away":
        assert not db.exists(), "the poll must not create an empty registry in its place"
    r = client.post("/predict", json={"lead_id": KNOWN})
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["champion"] == "1"
    assert body["reasons"] and "serving the last loaded champion v1" in body["reasons"][0]
    assert_no_internals(ready.text, settings)
    assert_no_internals(client.get("/model").text, settings)
    assert metric(client, "lead_scoring_registry_degraded") == 1.0
    assert metric(client, "lead_scoring_registry_poll_failures_total") >= 2
    # exponential backoff from 1 s, capped at the poll interval
    assert manager.next_wait(state) == 2.0
    assert manager.next_wait(state.__class__(failed_polls=40)) == 3600

    db.write_bytes(saved)
    state = manager.refresh()
    assert not state.degraded and state.champion.version == 1
    assert client.get("/ready").json()["status"] == "ready"
    assert metric(client, "lead_scoring_registry_degraded") == 0.0
    assert manager.next_wait(state) == 3600


def test_registry_down_before_any_model_is_503(stack, tmp_path):
    settings = copy_stack(stack, tmp_path)
    db = Path(settings.paths.mlflow_tracking_uri.removeprefix("sqlite:///"))
    db.rename(db.with_name("mlflow.db.aside"))
    with TestClient(create_app(settings)) as client:
        state = client.app.state.manager.refresh()
        assert state.champion is None and state.degraded
        for r in (client.get("/ready"), client.post("/predict", json={"lead_id": KNOWN})):
            assert r.status_code == 503 and "no model" in r.json()["detail"]
            assert_no_internals(r.text, settings)
        assert metric(client, "lead_scoring_registry_degraded") == 1.0


def lock_store(path: Path) -> tuple[sqlite3.Connection, callable]:
    """Hold an exclusive lock on the store from another connection (rollback-journal mode,
    as stock `feast materialize` leaves it; in WAL mode readers are never blocked)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn, lambda: conn.execute("ROLLBACK")


def drop_tables(path: Path) -> tuple[sqlite3.Connection, callable]:
    """The store's tables gone (a store rebuilt or emptied under the service)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for t in TABLES:
        conn.execute(f"ALTER TABLE {t} RENAME TO {t}_gone")

    def restore() -> None:
        for t in TABLES:
            conn.execute(f"ALTER TABLE {t}_gone RENAME TO {t}")

    return conn, restore


@pytest.mark.parametrize("outage", [lock_store, drop_tables], ids=["locked", "tables gone"])
def test_online_store_outage_scores_from_the_request(stack, scorers, tmp_path, outage):
    settings = copy_stack(stack, tmp_path)
    store = settings.paths.feast_dir / ONLINE_STORE_FILE
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    app = create_app(settings, loader=lambda s, v: scorers[v], alias_lookup=Aliases())
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/predict", json={"lead_id": KNOWN}).json()["scored_by"] == "full"

        conn, restore = outage(store)
        try:
            started = time.perf_counter()
            r = client.post("/predict", json={"lead_id": KNOWN})
            assert time.perf_counter() - started < 1.0, "a locked store must not stall requests"
            assert r.status_code == 503 and r.json()["detail"] == STORE_UNAVAILABLE
            assert_no_internals(r.text, settings)

            r = client.post("/predict", json={**ORIGINAL_EXAMPLE, "lead_id": KNOWN})
            assert r.status_code == 200
            body = r.json()
            assert body["scored_by"] == "request" and body["warnings"] == [STORE_DOWN_WARNING]
            assert body["feature_sources"]["from_online_store"] == []
            assert body["model_version"] == "1"

            batch = client.post("/predict/batch", json={"leads": [
                {"lead_id": KNOWN}, ORIGINAL_EXAMPLE]}).json()
            assert batch["unavailable"] == [KNOWN] and batch["not_found"] == []
            assert [p["scored_by"] for p in batch["predictions"]] == ["request"]

            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["reasons"] == [STORE_DEGRADED]
            assert metric(client, "lead_scoring_online_store_degraded") == 1.0
            assert metric(client, "lead_scoring_online_store_failures_total") >= 1
        finally:
            restore()
            conn.close()

        deadline = time.monotonic() + 20  # the store is retried after its backoff
        while time.monotonic() < deadline:
            r = client.post("/predict", json={"lead_id": KNOWN})
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["scored_by"] == "full"
        assert r.json()["warnings"] == []
        assert client.get("/ready").json()["status"] == "ready"
