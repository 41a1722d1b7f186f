"""Engines of every relational store, from its URL: the one place that knows SQLite from Postgres.

Each store module (ml/crm.py, ml/monitoring/store.py, ...) owns its tables, reads and writes and
asks this module for an engine on the URL its setting names (`paths.crm_url`,
`paths.monitoring_url`, `serving.prediction_log_url`). Moving a store to a server is a setting,
never code (DESIGN.md):

- `sqlite:///path/file.db` (the default of every store): a file of its own in WAL mode, so readers
  never block the writer nor it them; a busy timeout instead of "database is locked"; writers open
  their transactions with `BEGIN IMMEDIATE`, so a transaction that reads then writes cannot fail
  half-way on a lock upgrade. `read_only=True` opens the file `mode=ro` (it must exist). A
  truncated or damaged file is a StoreError naming it, at connect or at the first query that
  meets a damaged page (never a raw sqlite traceback).
- `postgresql://...` (taken as `postgresql+psycopg://`, psycopg 3 from the `backends` extra):
  a pooled engine with pre-ping; `read_only=True` runs its transactions READ ONLY. A schema other
  than `public` is chosen in the URL: `?options=-csearch_path%3Dmy_schema`.

Engines are cached per (URL, read_only) per process (a forked child makes its own).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from ml.errors import ConfigError, StoreError

# busy_timeout: how long a writer waits for another writer's transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[tuple[int, str, bool], Engine] = {}
_lock = threading.Lock()


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of a store, PostgreSQL URLs with the psycopg 3 driver.

    Raises ConfigError for anything but a SQLite file or a PostgreSQL URL.
    """
    try:
        sa_url = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"store URL {url!r} is not a database URL: {exc}") from exc
    backend, _, driver = sa_url.drivername.partition("+")
    if backend == "postgres":  # the libpq spelling
        backend = "postgresql"
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ConfigError(
                f"store URL {sa_url.render_as_string(hide_password=True)}: driver {driver!r} is "
                "not installed; use postgresql+psycopg:// (psycopg 3, the `backends` extra)"
            )
        return sa_url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not sa_url.database or sa_url.database == ":memory:":
            raise ConfigError(
                f"store URL {url!r}: a store must be an SQLite file (WAL needs one) or PostgreSQL, "
                "not an in-memory SQLite"
            )
        return sa_url
    raise ConfigError(
        f"store URL {sa_url.render_as_string(hide_password=True)}: unsupported database "
        f"{backend!r}; use sqlite:///path/to/file.db or postgresql+psycopg://user:pw@host/db"
    )


def display_url(url: str) -> str:
    """The URL with its password masked, for logs, metadata and summaries."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except ConfigError:
        return url.split("@")[-1] if "@" in url else url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite store URL; None for a server database."""
    sa_url = parse_url(url)
    return Path(sa_url.database) if sa_url.get_backend_name() == "sqlite" else None


def engine(url: str, *, read_only: bool = False) -> Engine:
    """The engine of a store URL (cached per URL and mode in this process).

    A writable SQLite engine creates the file's folder; a read-only one needs the file to exist
    (sqlite3 raises OperationalError on first connect otherwise).
    """
    key = (os.getpid(), url, read_only)
    with _lock:
        cached = _engines.get(key)
        if cached is None:
            cached = _engines[key] = _make_engine(parse_url(url), read_only)
        return cached


def dispose(url: str | None = None) -> None:
    """Close and forget the cached engines of `url` (all of them when None)."""
    with _lock:
        for key in [k for k in _engines if url is None or k[1] == url]:
            _engines.pop(key).dispose()


def _make_engine(sa_url: URL, read_only: bool) -> Engine:
    if sa_url.get_backend_name() == "postgresql":
        pg = create_engine(sa_url, pool_pre_ping=True)
        return pg.execution_options(postgresql_readonly=True) if read_only else pg  # type: ignore[return-value]
    return _sqlite_engine(Path(sa_url.database), read_only)


# SQLite's primary result codes for a file that is not (or no longer) a whole database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def damaged_store(path: Path, exc: Exception) -> StoreError:
    """The error for an SQLite store file that is truncated or damaged: it names the file."""
    return StoreError(
        f"{path} is damaged or truncated, not a whole SQLite database (sqlite: {exc}); nothing "
        "was written to it. Restore the file from a backup (or move it aside: the step then "
        "starts an empty store, without the history it held)"
    )


def _sqlite_engine(path: Path, read_only: bool) -> Engine:
    if read_only:
        # SQLite URI filenames: pysqlite opens `file:...?mode=ro` only with uri=true.
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    # NullPool: a connection per use (opening an SQLite file costs microseconds), so no
    # connection outlives its transaction, crosses threads, or keeps a deleted file open.
    sqlite = create_engine(
        url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(sqlite, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite (which begins lazily before DML only) so
        # the "begin" hook below decides; see SQLAlchemy's "Serializable isolation" notes.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a process crash never loses or tears a committed
                # transaction; only an OS crash or power cut may lose the last commits.
                cur.execute("PRAGMA synchronous=NORMAL")
                # A big transaction's B-tree pages stay in memory until the commit (256 MiB at
                # most), and sorts for indexes never spill to a temporary file.
                cur.execute("PRAGMA cache_size=-262144")
                cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise damaged_store(path, exc) from None
            raise
        finally:
            cur.close()

    @event.listens_for(sqlite, "handle_error")
    def _on_error(context: Any) -> None:
        # a damaged page met by a query (the first pages may be whole): name the file
        if isinstance(context.original_exception, sqlite3.DatabaseError) and _is_damage(
                context.original_exception):
            raise damaged_store(path, context.original_exception) from None

    @event.listens_for(sqlite, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return sqlite
