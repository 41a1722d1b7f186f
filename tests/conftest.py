"""Session fixtures: one small generated dataset, built once through the real pipeline.

Each layer's fixture builds on the one before (raw files → warehouse + marts → Feast store),
so a test asks for the deepest layer it needs and pays only for that.

Store backends: a test that asks for `store_url` runs once on SQLite and once on PostgreSQL
(marked `postgres`), with the same assertions. PostgreSQL is the server of
LEAD_SCORING_TEST_POSTGRES_URL (`eval "$(make -s services)"` starts one); each test gets a schema
of its own, dropped afterwards, so runs are isolated and re-runnable. Without the URL the
PostgreSQL variant is skipped, or fails when CI is set (CI must run it).

Online stores: a test that asks for `online_store_url` runs on Feast's SQLite store and on Redis
(marked `redis`; LEAD_SCORING_TEST_REDIS_URL). Each Redis store is a database (1-15) of that
server claimed by the test with an atomic SET NX (so concurrent runs never share one), emptied
before and after.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pipeline_data import make_settings
from repo_root_guard import root_writes, snapshot
from sqlalchemy import text

from ml import stores
from ml.config import PROJECT_ROOT, Settings

_ROOT_SNAPSHOT = pytest.StashKey[dict]()
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


# Directories whose conftest holds session fixtures: their tests stay on one xdist worker.
_SESSION_FIXTURE_DIRS = {"ml", "serving", "dashboard"}


def _xdist_group(item: pytest.Item) -> str:
    """Tests that share an expensive fixture share a worker: every test of the generated
    pipeline (`pipeline_settings` and the layers on it), every test of a directory with session
    fixtures, and every test of a module (module fixtures)."""
    if "pipeline_settings" in getattr(item, "fixturenames", ()):
        return "pipeline"
    path = Path(str(item.path)).relative_to(Path(__file__).parent)
    if len(path.parts) > 1 and path.parts[0] in _SESSION_FIXTURE_DIRS:
        return path.parts[0]
    return str(path)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the mark into the node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`): each test
    gets the group `_xdist_group` names, so no expensive fixture is built twice."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


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

POSTGRES_URL_ENV = "LEAD_SCORING_TEST_POSTGRES_URL"
REDIS_URL_ENV = "LEAD_SCORING_TEST_REDIS_URL"
REDIS_CLAIM_KEY = "lead_scoring_test:claimed_by"


def _server_url(env: str) -> str:
    url = os.environ.get(env)
    if not url:
        message = f'{env} is not set; start the servers with: eval "$(make -s services)"'
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI runs the server-backend tests: {message}")
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The relational backend a store test runs on: sqlite, then postgres."""
    return request.param


@pytest.fixture
def store_url(store_backend: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """`store_url(name)`: the URL of a fresh, empty store for this test on `store_backend`
    (an SQLite file under tmp_path, or a PostgreSQL schema of its own)."""
    if store_backend == "sqlite":
        yield lambda name: f"sqlite:///{tmp_path / name / f'{name}.db'}"
        return
    base = stores.parse_url(_server_url(POSTGRES_URL_ENV))
    admin = stores.engine(base.render_as_string(hide_password=False))
    made: dict[str, str] = {}

    def make(name: str) -> str:
        if name not in made:
            schema = f"test_{name}_{uuid.uuid4().hex[:10]}"
            with admin.begin() as conn:
                conn.execute(text(f'create schema "{schema}"'))
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            made[name] = url.render_as_string(hide_password=False)
        return made[name]

    yield make
    for url in made.values():
        stores.dispose(url)
    with admin.begin() as conn:
        for url in made.values():
            schema = stores.parse_url(url).query["options"].removeprefix("-csearch_path=")
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))


def _empty_redis_db(client) -> None:
    """Delete every key but the claim (FLUSHDB would drop the claim with them)."""
    for key in client.scan_iter(count=10_000):
        if key != REDIS_CLAIM_KEY.encode():
            client.delete(key)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online_backend(request: pytest.FixtureRequest) -> str:
    """The Feast online store a test runs on: sqlite, then redis."""
    return request.param


@pytest.fixture
def online_store_url(online_backend: str) -> Iterator[Callable[[], str | None]]:
    """`online_store_url()`: a fresh, empty online store for this test on `online_backend`, as
    the value of `paths.online_store_url` (None: SQLite, the default file under the data dir;
    each call claims another Redis database)."""
    if online_backend == "sqlite":
        yield lambda: None
        return
    import redis

    base = _server_url(REDIS_URL_ENV)
    token = f"{os.getpid()}:{uuid.uuid4().hex}"
    claimed = []

    def claim() -> str:
        for db in range(1, 16):
            url = urlsplit(base)._replace(path=f"/{db}").geturl()
            client = redis.Redis.from_url(url)
            if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=3600):
                _empty_redis_db(client)
                claimed.append(client)
                return url
            client.close()
        pytest.fail(f"every Redis database 1-15 of {base} is claimed by another test run")

    yield claim
    for client in claimed:
        _empty_redis_db(client)
        client.delete(REDIS_CLAIM_KEY)
        client.close()


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

