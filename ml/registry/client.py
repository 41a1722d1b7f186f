"""The MLflow client on the configured store, and the translation of MLflow's failures.

Every MLflow call of the platform goes to `settings.paths.mlflow_tracking_uri` (tracking and
registry alike). Most go through an `MlflowClient` built with both URIs. Two calls exist only
in MLflow's fluent API or read its global URI: logging the pyfunc model and creating a model
version from a `models:/m-…` URI (the SQL registry looks the logged model up through
`MlflowClient()`). They run inside `fluent_uris()`, which sets the global tracking and registry
URIs for the block and restores both, with the `MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI`
variables MLflow exports on the way (`load_settings` reads the first as an override, so a
leaked one would redirect every later settings object to MLflow's default `./mlflow.db`).

Failures fail closed. Only a genuine "not found" answer may mean "no such alias" or "no such
model" (`is_not_found`); anything else (database unreachable, locked, replaced, unreadable)
becomes a `RegistryError` naming the registry URI without credentials.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ml.config import Settings
from ml.errors import LeadScoringError


class RegistryError(LeadScoringError):
    """A registry request that cannot be served: no such version, nothing to roll back to, or
    the registry store itself failing (unreachable, locked, not an MLflow database)."""


# MLflow 3.17's answers for things that are legitimately absent (checked against its SQL store):
# a missing alias on an existing model is INVALID_PARAMETER_VALUE "Registered model alias X not
# found."; a missing model is RESOURCE_DOES_NOT_EXIST "Registered Model with name=X not found";
# a missing version is RESOURCE_DOES_NOT_EXIST "Model Version (name=X, version=N) not found".
# Both the code and the wording must match: an unknown answer is an error, never "absent".
_NOT_FOUND = (
    ("INVALID_PARAMETER_VALUE", re.compile(r"alias .* not found", re.IGNORECASE)),
    ("RESOURCE_DOES_NOT_EXIST", re.compile(r"^Registered Model with name=.* not found")),
    ("RESOURCE_DOES_NOT_EXIST", re.compile(r"^Model Version \(name=.*\) not found")),
)

# MLflow's fluent API has one global URI per process: one block at a time sets it.
_FLUENT_LOCK = threading.RLock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# Opening a new store creates its tables (MLflow's migrations, seconds): one thread at a time,
# so a thread opening the store while another is creating it waits instead of seeing half a
# schema (the demo creates the store in the background while dbt builds).
_OPEN_LOCK = threading.Lock()


def safe_uri(uri: str) -> str:
    """The URI without user name and password (for messages and logs)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def registry_uri(settings: Settings) -> str:
    """The one URI MLflow tracking and the model registry use."""
    return settings.paths.mlflow_tracking_uri


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def mlflow_client(settings: Settings, *, create: bool = True) -> Any:
    """An MlflowClient whose tracking and registry URIs are the settings' store.

    Args:
        create: a new local SQLite store may be created (its folder is made). With False, the
            store must already be an MLflow database: a reader must not plant an empty
            registry where the real one was moved away or damaged (MLflow would create the
            tables, and every lookup would then answer "no champion").

    Raises:
        RegistryError: the store cannot be opened, or (SQLite) is missing, not a file, not a
            database or holds no MLflow tables where one is required.
    """
    from mlflow import MlflowClient

    uri = registry_uri(settings)
    path = _sqlite_file(uri)
    with _OPEN_LOCK:
        if path is not None:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            _check_sqlite_store(uri, path, create)
        try:  # MLflow opens the tracking store (and creates its tables) right here
            return MlflowClient(tracking_uri=uri, registry_uri=uri)
        except Exception as exc:
            raise RegistryError(
                f"MLflow registry {safe_uri(uri)} cannot be opened: "
                f"{_first_line(f'{type(exc).__name__}: {exc}', uri)}"
            ) from exc
        finally:
            release_connections(settings)


_MLFLOW_TABLES = frozenset({"experiments", "runs", "registered_models", "model_versions"})


def _check_sqlite_store(uri: str, path: Path, create: bool) -> None:
    """A SQLite store is usable if it holds MLflow's tables; with `create`, also if it does
    not exist yet or is empty (MLflow creates the tables)."""
    unavailable = f"MLflow registry {safe_uri(uri)} is unavailable:"
    if not path.exists():
        if create:
            return
        raise RegistryError(
            f"{unavailable} the database file does not exist; train a model first, or check "
            "paths.mlflow_tracking_uri / MLFLOW_TRACKING_URI"
        )
    if not path.is_file():
        raise RegistryError(f"{unavailable} the database path is not a file")
    if create and path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("select name from sqlite_master where type = 'table'").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise RegistryError(f"{unavailable} not a readable SQLite database ({exc})") from exc
    missing = _MLFLOW_TABLES - {name for (name,) in rows}
    if missing:
        raise RegistryError(
            f"{unavailable} the database holds no MLflow tables ({', '.join(sorted(missing))} "
            "missing); restore it or point paths.mlflow_tracking_uri at the right store"
        )


def is_not_found(exc: BaseException) -> bool:
    """True only for MLflow's answer that an alias, model or version does not exist."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    code, message = exc.error_code, str(exc.message)
    return any(code == c and pattern.search(message) for c, pattern in _NOT_FOUND)


@contextlib.contextmanager
def registry_errors(settings: Settings, doing: str) -> Iterator[None]:
    """Turn any failure of the MLflow store inside the block into a RegistryError naming the
    registry (not-found answers included: callers that accept "absent" catch those first with
    `is_not_found`). On leaving, pooled SQLite connections are closed, so the next call opens
    the database file again and sees it if it was moved, replaced or damaged meanwhile."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    uri = registry_uri(settings)
    try:
        yield
    except RegistryError:
        raise
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        detail = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
        raise RegistryError(
            f"MLflow registry {safe_uri(uri)} failed while {doing}: {_first_line(str(detail), uri)}"
        ) from exc
    finally:
        release_connections(settings)


def _first_line(text: str, uri: str) -> str:
    line = (text.strip().splitlines() or [""])[0][:300]
    return line.replace(uri, safe_uri(uri))


def release_connections(settings: Settings) -> None:
    """Close MLflow's pooled connections to a SQLite store (MLflow caches one engine per URI
    for the life of the process; an open SQLite handle keeps reading a file that was moved or
    replaced, which would hide an outage). Server databases keep their pools."""
    uri = registry_uri(settings)
    if _sqlite_file(uri) is None:
        return
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store in (RegistryStore, TrackingStore):
        engine = getattr(store, "_engine_map", {}).get(uri)
        if engine is not None:
            engine.dispose()


@contextlib.contextmanager
def fluent_uris(settings: Settings) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at the settings' store for the block;
    restore the previous URIs and the variables MLflow exports afterwards."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    uri = registry_uri(settings)
    with _FLUENT_LOCK:
        saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
        saved_tracking = tracking_utils._tracking_uri
        saved_registry = registry_utils._registry_uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)
            registry_utils._registry_uri = saved_registry  # set_registry_uri(None) keeps it
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
