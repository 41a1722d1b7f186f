"""Session fixtures: one small generated dataset, built once through the real pipeline.

Each layer's fixture builds on the one before (raw files → warehouse + marts → Feast store),
so a test asks for the deepest layer it needs and pays only for that.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from pipeline_data import make_settings
from repo_root_guard import root_writes, snapshot

from ml.config import PROJECT_ROOT, Settings

_ROOT_SNAPSHOT = pytest.StashKey[dict]()
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_ROOT_SNAPSHOT] = snapshot(PROJECT_ROOT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if it wrote at the repository root or under data/ (see
    repo_root_guard): `make test` must leave the checkout as it found it, so it can run again."""
    before = session.config.stash.get(_ROOT_SNAPSHOT, None)
    if before is None or hasattr(session.config, "workerinput"):  # xdist workers: controller
        return
    writes = root_writes(before, snapshot(PROJECT_ROOT))
    if writes:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = (
            f"the test session wrote outside its temporary folders, in {PROJECT_ROOT}:\n  "
            + "\n  ".join(writes)
        )
        if reporter is not None:
            reporter.write_sep("=", "repository root written", red=True)
            reporter.write_line(text)
        else:
            print(text, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _mlflow_uri_state() -> tuple[str | None, ...]:
    env = tuple(os.environ.get(name) for name in _MLFLOW_URI_VARIABLES)
    if "mlflow" not in sys.modules:
        return (*env, None, None)
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return (*env, tracking_utils._tracking_uri, registry_utils._registry_uri)


@pytest.fixture(autouse=True)
def _mlflow_global_uris_untouched() -> Iterator[None]:
    """A test that leaves MLflow's global URIs (or the variables MLflow exports) changed fails:
    load_settings reads MLFLOW_TRACKING_URI, so a leaked URI redirects every later test's
    registry (this is how ./mlflow.db once filled up at the repository root)."""
    before = _mlflow_uri_state()
    yield
    after = _mlflow_uri_state()
    if after != before:
        for name, value in zip(_MLFLOW_URI_VARIABLES, before, strict=False):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "mlflow" in sys.modules:
            from mlflow.tracking._model_registry import utils as registry_utils
            from mlflow.tracking._tracking_service import utils as tracking_utils

            tracking_utils._tracking_uri, registry_utils._registry_uri = before[2], before[3]
        pytest.fail(
            "the test changed MLflow's global URIs (env MLFLOW_TRACKING_URI, "
            f"MLFLOW_REGISTRY_URI, tracking, registry): {before} -> {after}; use "
            "ml.registry.fluent_uris or an MlflowClient with explicit URIs"
        )


@pytest.fixture(scope="session")
def pipeline_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def raw_data(pipeline_settings: Settings):
    from ml.data.generator import generate_from_settings

    return generate_from_settings(pipeline_settings)


@pytest.fixture(scope="session")
def warehouse(pipeline_settings: Settings, raw_data):
    from ml.warehouse import build_warehouse

    return build_warehouse(pipeline_settings)


@pytest.fixture(scope="session")
def feature_store(pipeline_settings: Settings, warehouse):
    from ml.feature_store import apply_feature_repo, get_store
    from ml.online_refresh import refresh_online_store

    apply_feature_repo(pipeline_settings)
    refresh_online_store(pipeline_settings)
    return get_store(pipeline_settings)
