"""Fixtures: one tiny serving stack per session (see serving_stack.py) and app factories.

The registered versions are loaded from MLflow once; the apps get them through an injected
loader, and aliases through an injected lookup the tests can move, so hot reload and routing
are tested without re-reading MLflow in every test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from serving_stack import Aliases, build_stack  # noqa: F401 - re-exported for tests

from ml.config import Settings, load_settings
from ml.model import LeadScorer
from ml.serving.app import create_app


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """v1 @champion and v2 @challenger over 300 leads in the online store."""
    return build_stack(tmp_path_factory.mktemp("serving"), n_leads=300)


@pytest.fixture(scope="session")
def scorers(stack: Settings) -> dict[int, LeadScorer]:
    from ml.registry import load_version

    return {v: load_version(stack, v)[0] for v in (1, 2)}


def serving_settings(stack: Settings, tmp_path: Path, **serving: Any) -> Settings:
    overrides = {f"serving.{k}": v for k, v in serving.items()}
    return load_settings(overrides={
        "paths.data_dir": str(stack.paths.data_dir),
        "serving.prediction_log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "serving.poll_interval_seconds": 3600,  # tests call refresh() themselves
        **overrides,
    })


def wait_ready(client: TestClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"service not ready: {client.get('/ready').json()}")


@pytest.fixture()
def make_client(stack: Settings, scorers: dict[int, LeadScorer], tmp_path: Path
                ) -> Iterator[Callable[..., TestClient]]:
    """make_client(aliases=None, loader=None, ready=True, **serving settings) -> TestClient
    (started; waits for /ready unless ready=False)."""
    clients: list[TestClient] = []

    def make(aliases: Aliases | None = None, loader: Any = None, ready: bool = True,
             **serving: Any) -> TestClient:
        settings = serving_settings(stack, tmp_path, **serving)
        app = create_app(settings, loader=loader or (lambda s, v: scorers[v]),
                         alias_lookup=aliases or Aliases())
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        if ready:
            wait_ready(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture()
def live_server(stack: Settings, scorers: dict[int, LeadScorer], tmp_path: Path
                ) -> Iterator[str]:
    """The service on a free loopback port in a thread; yields its base URL."""
    settings = serving_settings(stack, tmp_path)
    app = create_app(settings, loader=lambda s, v: scorers[v], alias_lookup=Aliases())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(10)
