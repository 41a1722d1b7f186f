"""The stores that production moves to a server — MLflow's backend store, the alias history and
the prediction log — work the same on SQLite files and on PostgreSQL (Feast's registry:
tests/feature_repo/test_feast_registry.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _scoring_fixtures import make_scorer

from ml import registry
from ml.config import load_settings
from ml.serving.prediction_log import PredictionLogWriter, read_log

WINDOW = {"test_window_start": "2026-09-01", "test_window_end": "2026-09-21"}


def _settings(tmp_path, store_url, backend: str, **urls: str):
    env = {
        "LEAD_SCORING_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": store_url("mlflow"),
        "LEAD_SCORING_ALIAS_HISTORY_URL": store_url("alias_history"),
        "LEAD_SCORING_PREDICTION_LOG_URL": store_url("prediction_log"),
        **urls,
    }
    return load_settings(env=env)


def _register(settings, auc: float) -> int:
    scorer, frame = make_scorer()
    info = registry.log_and_register(
        scorer,
        params={},
        metrics={"test_auc": auc},
        artifacts={},
        tags=WINDOW,
        input_example=frame.drop(columns="lead_id").head(5),
        settings=settings,
        actor="test",
    )
    return info.version


def test_registry_and_alias_history_on_the_store(tmp_path, store_url, store_backend):
    settings = _settings(tmp_path, store_url, store_backend)
    assert settings.paths.mlflow_tracking_uri.startswith(
        "postgresql" if store_backend == "postgres" else "sqlite"
    )
    v1, v2 = _register(settings, 0.80), _register(settings, 0.82)
    assert registry.promote(settings, v1, reason="first", actor="test", force=True).accepted
    assert registry.promote(settings, v2, reason="second", actor="test", force=True).accepted
    assert registry.current_version(settings, "champion") == v2
    registry.rollback(settings, reason="bad calls", actor="cli:rollback")

    assert registry.current_version(settings, "champion") == v1
    history = registry.alias_history(settings)
    assert history["action"].tolist() == [
        "challenger", "challenger", "promote", "promote", "rollback"
    ]
    assert history["reason"].iloc[-1] == "bad calls"
    loaded, version = registry.load_version(settings, "champion")
    assert version == v1 and loaded is not None


def test_prediction_log_on_the_store(tmp_path, store_url, store_backend):
    settings = _settings(tmp_path, store_url, store_backend)
    writer = PredictionLogWriter(settings.serving.prediction_log_url, flush_seconds=0.05)
    writer.start()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "logged_at": now, "request_id": f"r{i}", "endpoint": "predict", "lead_id": f"L{i}",
            "mode": "off", "variant": "champion", "served": True, "model_name": "m",
            "model_version": "1", "probability": i / 10, "score": i * 10.0, "tier": "A",
            "latency_ms": 1.5, "in_online_store": i % 2 == 0, "status": "ok", "error": None,
        }
        for i in range(5)
    ]
    writer.submit(rows)
    assert writer.flush()
    writer.stop()
    log = read_log(settings)
    assert (writer.written, writer.failed) == (5, 0)
    assert log["lead_id"].tolist() == [f"L{i}" for i in range(5)]
    assert log["in_online_store"].tolist() == [True, False, True, False, True]


def test_store_urls_are_checked_on_load(tmp_path):
    with pytest.raises(Exception, match="online_store_url"):
        load_settings(env={"LEAD_SCORING_ONLINE_STORE_URL": "memcached://x"})
    with pytest.raises(Exception, match="feast_registry_url"):
        load_settings(env={"LEAD_SCORING_FEAST_REGISTRY_URL": "mysql://x/y"})
