"""Security of the service: optional API keys (environment or secrets file; /health open,
everything else protected when configured), keys never logged, and no internal path, URL or
exception text in any response, whatever fails underneath."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_stack import Aliases

from ml.config import load_settings
from ml.errors import ConfigError
from ml.serving.app import create_app

KEY_A = "a3f1c9e07b5d4e2a9c8b7f6e5d4c3b2a"
KEY_B = "file-key-0123456789abcdef0123"
KNOWN = "L0000001"
PROTECTED = [("get", "/ready", None), ("get", "/model", None), ("get", "/metrics", None),
             ("get", "/docs", None), ("get", "/openapi.json", None),
             ("post", "/predict", {"lead_id": KNOWN}),
             ("post", "/predict/batch", {"leads": [{"lead_id": KNOWN}]})]


def serving_settings(stack, tmp_path: Path, **serving):
    """As tests/serving/conftest.py builds them (imported from there, `conftest` can resolve
    to another folder's conftest module, depending on what pytest collected last)."""
    return load_settings(overrides={
        "paths.data_dir": str(stack.paths.data_dir),
        "serving.prediction_log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "serving.poll_interval_seconds": 3600,
        **{f"serving.{k}": v for k, v in serving.items()}})


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the service never got ready"
        time.sleep(0.05)


def _call(client: TestClient, method: str, path: str, body, key: str | None = None):
    headers = {} if key is None else {"X-API-Key": key}
    return client.request(method.upper(), path, json=body, headers=headers)


def test_without_keys_the_service_is_open(client) -> None:
    assert client.post("/predict", json={"lead_id": KNOWN}).status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_with_keys_only_health_is_open(make_client, monkeypatch, tmp_path, caplog) -> None:
    keys_file = tmp_path / "api_keys"
    keys_file.write_text(f"# the CRM's key\n{KEY_B}\n\n")
    monkeypatch.setenv("TEST_LEAD_SCORING_API_KEYS", f" {KEY_A} ,")
    caplog.set_level(logging.DEBUG)
    client = make_client(ready=False, **{"auth.keys_env": "TEST_LEAD_SCORING_API_KEYS",
                                         "auth.keys_file": str(keys_file)})
    assert client.get("/health").status_code == 200
    for key in (KEY_A, KEY_B):  # one from the environment, one from the file
        deadline = time.monotonic() + 60
        while _call(client, "get", "/ready", None, key).status_code != 200:
            assert time.monotonic() < deadline, "the service never got ready"
            time.sleep(0.05)
        for method, path, body in PROTECTED:
            assert _call(client, method, path, body, key).status_code == 200, path
    for method, path, body in PROTECTED:
        for wrong in (None, "", KEY_A[:-1], KEY_A + "x", KEY_A.upper()):
            r = _call(client, method, path, body, wrong)
            assert r.status_code == 401, (path, wrong)
            assert r.json() == {"detail": "missing or unknown API key; send it in the X-API-Key "
                                          "header"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rejected a request to /predict" in logged
    assert KEY_A not in logged and KEY_B not in logged and KEY_A[:-1] not in logged


@pytest.mark.parametrize(("write", "message"), [
    (None, "serving.auth.keys_file .* cannot be read"),
    ("# only a comment\n\n", "serving.auth.keys_file .* holds no key"),
    ("short\n", "shorter than 16 characters"),
])
def test_bad_key_settings_are_an_error_naming_them(tmp_path: Path, write, message) -> None:
    path = tmp_path / "keys"
    if write is not None:
        path.write_text(write)
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides={"serving.auth.keys_file": str(path)})


def test_no_internal_detail_in_any_response(stack, scorers, tmp_path) -> None:
    """Everything underneath fails with messages full of paths, URLs and exception text: the
    registry lookup, the challenger's load, the online store, scoring itself. No response body
    of any endpoint carries any of it."""
    secret_path = str(tmp_path / "private" / "mlflow.db")
    secret_url = "postgresql://scorer:hunter2@db.internal:5432/mlflow"
    detail = f"{secret_path} {secret_url} boom"
    calls = {"n": 0}

    def lookup(settings, alias):
        calls["n"] += 1
        if calls["n"] > 2:  # the first poll loads v1; every later poll fails
            raise ConnectionError(detail)
        return Aliases()(settings, alias)

    def loader(settings, version):
        if version == 2:
            raise FileNotFoundError(detail)
        return scorers[version]

    settings = serving_settings(stack, tmp_path, mode="canary")
    app = create_app(settings, loader=loader, alias_lookup=lookup)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        app.state.manager.refresh()  # registry down now

        def fail(*args, **kwargs):
            raise RuntimeError(detail)

        app.state.reader.read = fail  # the online store fails in a way nobody planned for
        bodies = [client.get(p).text for p in ("/health", "/ready", "/model", "/metrics")]
        for payload in ({"lead_id": KNOWN}, {"lead_id": "new", "lead_source": "Web"},
                        {"lead_id": 5}, "not json"):
            kwargs = {"content": payload} if isinstance(payload, str) else {"json": payload}
            bodies.append(client.post("/predict", **kwargs).text)
            bodies.append(client.post("/predict/batch", json={"leads": [payload]}).text)
        assert app.state.manager.state.degraded
    text = "\n".join(bodies)
    for leak in (secret_path, "private", "hunter2", "db.internal", "boom", "Traceback",
                 "ConnectionError", "FileNotFoundError", "RuntimeError", str(stack.paths.data_dir)):
        assert leak not in text, f"a response carries {leak!r}"
    assert json.loads(bodies[1])["status"] == "degraded"  # the failures did happen
