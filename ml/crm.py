"""The CRM database: current scores, score history and scoring-run bookkeeping.

Batch scoring is the only writer. Every run is written in ONE transaction that replaces the
history rows of its scoring date, so a crash (even kill -9) at any point leaves the previous
complete state and re-running a date is idempotent. `lead_scores` (the current score of every
lead) is a view of the history's latest scoring date: what a copy of that run's rows held, without
writing a million rows twice (a third of a 1M-lead run's write time; an older table of that name
is replaced by the view, losing nothing, since the table always held exactly that run). Readers (CRM
import, dashboard, service) open the database read-only; with SQLite in WAL mode they never wait
for the writer and see the last committed run.

On SQLite the commit record in the WAL is the commit: a big run's commit returns without copying
the run from the WAL into the database file, which a thread does next (`wait_for_checkpoints`).

The URL is `settings.paths.crm_url` (an SQLite file of its own by default, never the warehouse;
or PostgreSQL), its engine from ml/stores.py. The bulk path uses the DBAPI inside that transaction:
executemany on SQLite, COPY on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

from ml import stores
from ml.config import Settings

log = logging.getLogger(__name__)

metadata = MetaData()


def _score_columns() -> list[Column]:
    return [
        Column("score", Float, nullable=False),
        Column("tier", String(1), nullable=False),
        Column("probability", Float, nullable=False),
        Column("score_change", Float, nullable=True),  # null for a lead scored for the first time
        Column("reasons_for", Text, nullable=False),  # JSON list of phrases
        Column("reasons_against", Text, nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("model_version", String(50), nullable=False),
        Column("scored_at", DateTime(timezone=True), nullable=False),  # UTC
        Column("scoring_date", Date, nullable=False),
    ]


# A view (see above), described as a table so that readers select from it like one; it is not in
# `metadata`, so create_all never makes a table of it.
lead_scores = Table(
    "lead_scores",
    MetaData(),
    Column("lead_id", String(64), primary_key=True),
    *_score_columns(),
)

lead_score_history = Table(
    "lead_score_history",
    metadata,
    Column("scoring_date", Date, primary_key=True),
    Column("lead_id", String(64), primary_key=True),
    *[c for c in _score_columns() if c.name != "scoring_date"],
    Column("run_id", String(200), nullable=False),
    sqlite_with_rowid=False,
)

scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scoring_date", Date, nullable=False, index=True),
    Column("run_id", String(200), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("rows", Integer, nullable=True),
    Column("status", String(20), nullable=False),  # running, succeeded, failed, interrupted
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# Columns a caller must supply in `scores`; the rest of a row comes from write_scores' arguments.
SCORE_FRAME_COLUMNS = (
    "lead_id",
    "score",
    "tier",
    "probability",
    "score_change",
    "reasons_for",
    "reasons_against",
)
HISTORY_COLUMNS = [c.name for c in lead_score_history.columns]
CURRENT_COLUMNS = [c.name for c in lead_scores.columns]


def crm_engine(settings: Settings, *, read_only: bool = False, url: str | None = None) -> Engine:
    """The engine of the CRM database (`settings.paths.crm_url` unless `url`), from ml/stores.py.

    SQLite: WAL mode (readers never block the writer, nor it them), a busy timeout, `BEGIN
    IMMEDIATE` writer transactions so DELETE+INSERT run as one unit; `read_only=True` opens the
    file `mode=ro` (it must exist). PostgreSQL: `read_only=True` runs READ ONLY transactions.
    """
    return stores.engine(url or settings.paths.crm_url, read_only=read_only)


def ensure_schema(engine: Engine) -> None:
    """Create the CRM tables and the `lead_scores` view if they do not exist (idempotent); a
    `lead_scores` table of an older version becomes the view, in one transaction."""
    metadata.create_all(engine, checkfirst=True)
    from sqlalchemy import inspect

    if "lead_scores" in inspect(engine).get_view_names():
        return
    cols = ", ".join(CURRENT_COLUMNS)
    with engine.begin() as conn:
        if inspect(conn).has_table("lead_scores"):
            conn.execute(text("DROP TABLE lead_scores"))
        conn.execute(text(
            f"CREATE VIEW lead_scores AS SELECT {cols} FROM lead_score_history "
            "WHERE scoring_date = (SELECT max(scoring_date) FROM lead_score_history)"
        ))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _history_block(
    scores: pd.DataFrame, columns: Sequence[str], written: list[int]
) -> np.ndarray:
    """The values of `columns` of a scores frame as one (rows, columns) object array, NaN/NA as
    None (portable NULLs, any DBAPI); counted into written[0].

    One array, filled a column at a time in C, turns into the inserts' parameter lists with a
    reshape and one `tolist` (no row tuples, no per-row Python)."""
    block = np.empty((len(scores), len(columns)), dtype=object)
    for j, name in enumerate(columns):
        col = scores[name]
        if col.dtype.kind == "f":
            values = col.to_numpy(dtype=float)
            block[:, j] = values
            block[np.isnan(values), j] = None
        elif col.dtype.kind in "iub":
            block[:, j] = col.to_numpy()
        else:
            block[:, j] = col.astype(object).where(col.notna(), None).to_numpy()
    written[0] += len(scores)
    return block


def _history_layout(
    engine: Engine, constants: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """(per-row columns, constant values) of `lead_score_history` rows.

    Values are in the dialect's bind format. The run's constants (date, model, run id) are not
    repeated in every row tuple: the insert statement carries them once.
    """
    dialect = engine.dialect
    bound: dict[str, Any] = {}
    for name, value in constants.items():
        # Apply SQLAlchemy's own conversion once (e.g. date -> 'YYYY-MM-DD' for SQLite) so raw
        # DBAPI inserts store exactly what SQLAlchemy readers expect.
        # Other dialects go through SQLAlchemy's executemany, which converts by itself.
        proc = lead_score_history.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        bound[name] = proc(value) if proc and dialect.name == "sqlite" else value
    return [c for c in HISTORY_COLUMNS if c not in bound], bound


def _check_columns(scores: pd.DataFrame) -> None:
    missing = [c for c in SCORE_FRAME_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks columns {missing}")


def _ordered(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks, each checked as it comes: its columns, and lead_id strictly increasing
    within it and from the previous chunk's last (so no lead is written twice)."""
    last: str | None = None
    for chunk in chunks:
        _check_columns(chunk)
        if chunk.empty:
            continue
        ids = chunk["lead_id"].to_numpy(dtype=object)
        if (last is not None and not ids[0] > last) or not (ids[1:] > ids[:-1]).all():
            raise ValueError(
                "score chunks must come in strictly increasing lead_id order (one row per "
                "lead); sort the leads by lead_id first"
            )
        last = ids[-1]
        yield chunk


def write_scores(
    engine: Engine,
    scores: pd.DataFrame | Iterable[pd.DataFrame],
    scoring_date: date,
    *,
    model_name: str,
    model_version: str,
    scored_at: datetime,
    run_id: str,
    batch_size: int = 50_000,
    before_commit: Callable[[], None] | None = None,
) -> int:
    """Write one scoring run atomically and idempotently; returns the number of rows.

    In one transaction: the history rows of `scoring_date` are deleted and the new ones
    inserted; the `lead_scores` view then shows this run, unless a later date is already in the
    history (a backfill only rewrites its own history). A `scoring_runs` row is marked `running`
    in its own short transaction first, so an interrupted run stays visible as such.

    Args:
        scores: columns lead_id, score, tier, probability, score_change, reasons_for,
            reasons_against (one row per lead; lead_id unique); or an iterable of such frames
            in strictly increasing lead_id order across all of them (the nightly pipeline's
            chunks, each inserted as it comes, all in the one transaction).
        batch_size: rows per executemany call (settings.scoring.write_batch_size).
        before_commit: called inside the transaction after the rows are written, just before
            the commit; an exception it raises rolls the run back (batch scoring waits there
            for its extract file, written meanwhile, to be on disk).

    Raises:
        ValueError: a frame lacks columns, or lead_id values repeat (or, for chunks, are not in
            strictly increasing order); the transaction is rolled back.
    """
    if isinstance(scores, pd.DataFrame):
        _check_columns(scores)
        if scores["lead_id"].duplicated().any():
            raise ValueError("scores frame has duplicate lead_id values; one row per lead expected")
        if not scores["lead_id"].is_monotonic_increasing:
            # Key order turns B-tree inserts into appends: 1M shuffled rows took ~5x longer.
            scores = scores.sort_values("lead_id", kind="stable")
        chunks: Iterable[pd.DataFrame] = [scores]
    else:
        chunks = _ordered(scores)
    ensure_schema(engine)
    scored_at = _utc(scored_at)
    started = datetime.now(UTC)
    with engine.begin() as conn:
        # One writer per store (DESIGN.md): a 'running' row of this date is a killed run.
        conn.execute(
            scoring_runs.update()
            .where(scoring_runs.c.scoring_date == scoring_date, scoring_runs.c.status == "running")
            .values(status="interrupted")
        )
        run_pk = conn.execute(
            scoring_runs.insert().values(
                scoring_date=scoring_date,
                run_id=run_id,
                model_version=model_version,
                rows=None,
                status="running",
                started_at=started,
            )
        ).inserted_primary_key[0]

    # A run of this process still folding its WAL into the file: done before this one writes
    # (meanwhile the caller's first chunk is scored), so this run's WAL starts from the top.
    wait_for_checkpoints()
    constants = {
        "scoring_date": scoring_date,
        "model_name": model_name,
        "model_version": str(model_version),
        "scored_at": scored_at,
        "run_id": run_id,
    }
    t0 = time.perf_counter()
    written = [0]
    holder: Any = None  # a connection that keeps the WAL open for the checkpoint after the commit
    try:
        with engine.begin() as conn:
            if stores.is_sqlite(engine):
                # This connection only (NullPool: it closes with the transaction): a small page
                # cache, so a big run's pages go to the WAL as they are inserted (while the next
                # chunk is scored) instead of all at the commit.
                conn.exec_driver_sql(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
            conn.execute(
                lead_score_history.delete().where(lead_score_history.c.scoring_date == scoring_date)
            )
            t_delete = time.perf_counter()
            columns, fixed = _history_layout(engine, constants)
            blocks = (_history_block(chunk, columns, written) for chunk in chunks)
            _insert_rows(conn, lead_score_history, columns, fixed, blocks, batch_size)
            t_history = time.perf_counter()
            latest = conn.execute(
                select(lead_score_history.c.scoring_date)
                .order_by(lead_score_history.c.scoring_date.desc())
                .limit(1)
            ).scalar()
            if latest is not None and latest > scoring_date:
                log.warning(
                    "scoring date %s is older than the latest run %s: history rewritten, "
                    "lead_scores still shows the latest run",
                    scoring_date,
                    latest,
                )
            conn.execute(
                scoring_runs.update()
                .where(scoring_runs.c.id == run_pk)
                .values(status="succeeded", rows=written[0], finished_at=datetime.now(UTC))
            )
            t_current = time.perf_counter()
            if before_commit is not None:
                before_commit()
            t_wait = time.perf_counter()
            if stores.is_sqlite(engine) and written[0] >= FOLD_AFTER_COMMIT_ROWS:
                # The commit appends the last pages to the WAL and returns; folding the WAL into
                # the database file (the checkpoint: copy and fsync, a second or more for 1M
                # rows) follows in a thread. The held connection keeps SQLite from folding it
                # when this one closes.
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                try:
                    holder = engine.raw_connection()
                except Exception:  # noqa: BLE001 - then this connection's close folds it
                    log.warning("no connection to hold the WAL open: checkpoint at the commit")
        # Leaving the block committed (and, for SQLite, ran the WAL auto-checkpoint, unless the
        # checkpoint was left to the thread started here).
        if holder is not None:
            _fold_in_background(holder, run_id)
            holder = None
    except BaseException:
        if holder is not None:
            with contextlib.suppress(Exception):
                holder.close()
        try:
            with engine.begin() as conn:
                conn.execute(
                    scoring_runs.update()
                    .where(scoring_runs.c.id == run_pk)
                    .values(status="failed", finished_at=datetime.now(UTC))
                )
        except Exception:  # the original error matters more than the bookkeeping
            log.exception("could not mark scoring run %s as failed", run_id)
        raise
    t_end = time.perf_counter()
    log.info(
        "wrote %d scores for %s (run %s) in %.2f s (delete %.2f, history %.2f, bookkeeping %.2f, "
        "waiting before the commit %.2f, commit %.2f)",
        written[0],
        scoring_date,
        run_id,
        t_end - t0,
        t_delete - t0,
        t_history - t_delete,
        t_current - t_history,
        t_wait - t_current,
        t_end - t_wait,
    )
    return written[0]


# The writer connection's page cache, KiB: what a run's transaction keeps in memory before its
# pages go to the WAL (ml/stores.py gives store writers 256 MiB, which for a 1M-lead run left
# ~256 MiB of pages to write at the commit).
_WRITER_CACHE_KIB = 16_384
# From this many rows, the commit of a run on SQLite leaves its WAL checkpoint to a thread (see
# `wait_for_checkpoints`); below, SQLite's auto-checkpoint at the commit takes milliseconds.
FOLD_AFTER_COMMIT_ROWS = 100_000

_folding: list[threading.Thread] = []
_folding_lock = threading.Lock()
_fork_hook = [False]


def _fold_in_background(holder: Any, run_id: str) -> None:
    """Start the checkpoint of a committed run's WAL in a (non-daemon) thread on `holder`."""
    thread = threading.Thread(
        target=_fold, args=(holder, run_id), name="crm-checkpoint", daemon=False
    )
    with _folding_lock:
        if not _fork_hook[0]:
            # a fork while SQLite works in a thread could leave its locks held in the child
            os.register_at_fork(before=wait_for_checkpoints)
            _fork_hook[0] = True
        _folding.append(thread)
    thread.start()


def _fold(holder: Any, run_id: str) -> None:
    """Checkpoint the WAL into the database file, then close `holder`."""
    t0 = time.perf_counter()
    try:
        _busy, frames, done = holder.driver_connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        log.info("run %s: checkpointed %d of %d WAL pages into the CRM file in %.2f s%s",
                 run_id, done, frames, time.perf_counter() - t0,
                 " (readers held the rest; the next checkpoint folds it)" if done < frames else "")
    except Exception:  # noqa: BLE001 - the run is committed; the next checkpoint redoes this one
        log.exception("run %s: the WAL checkpoint failed (the run is committed; SQLite "
                      "checkpoints again at the next commit or close)", run_id)
    finally:
        with contextlib.suppress(Exception):
            holder.close()


def wait_for_checkpoints() -> None:
    """Wait for the WAL checkpoints of this process's runs that are still under way.

    A run is committed (and visible to every reader) when `write_scores` returns; on SQLite, from
    FOLD_AFTER_COMMIT_ROWS rows, copying its WAL into the database file happens after that, in a
    thread. Only a copy of the database *file alone* needs this wait (copy the -wal file with it,
    or use SQLite's backup API, and it does not); the next `write_scores`, a fork and the
    interpreter's exit wait by themselves.
    """
    with _folding_lock:
        threads = list(_folding)
        _folding.clear()
    for thread in threads:
        thread.join()


def _bind_date(engine: Engine, value: date) -> Any:
    """A date as a textual query's parameter, stored the way SQLAlchemy's Date column stores it."""
    proc = Date().dialect_impl(engine.dialect).bind_processor(engine.dialect)
    return proc(value) if proc and engine.dialect.name == "sqlite" else value


def _sql_literal(value: Any) -> str:
    """An SQLite literal of a str, int or float bind value (strings quoted, quotes doubled)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"no SQLite literal for {value!r}")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character cannot be written as an SQLite literal")
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


# Rows per multi-row INSERT on SQLite (7 bound values each: far below SQLite's variable limit).
_ROWS_PER_INSERT = 50


def _insert_rows(
    conn: Any,
    table: Table,
    columns: Sequence[str],
    fixed: dict[str, Any],
    blocks: Iterable[np.ndarray],
    size: int,
) -> None:
    """Insert the rows of `blocks` ((rows, columns) object arrays of `columns`' values) with the
    same `fixed` values in every row; `size` rows per executemany call at most."""
    if conn.dialect.name == "sqlite":
        # The DBAPI cursor inside SQLAlchemy's transaction: no per-row dict building or type
        # processing (values are pre-converted), which makes 1M rows a few seconds. The run's
        # constants are literals of the statement: 5 fewer parameters to bind per row.
        # Several rows per statement: one parse-free step per _ROWS_PER_INSERT rows instead of
        # one per row (measured on 1M rows: half the CPU time of the write). Rows keep their order.
        names = [*columns, *fixed]
        literals = [_sql_literal(v) for v in fixed.values()]
        row = "(" + ", ".join(["?"] * len(columns) + literals) + ")"
        head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
        one, many = head + row, head + ", ".join([row] * _ROWS_PER_INSERT)
        width = len(columns) * _ROWS_PER_INSERT
        cursor = conn.connection.driver_connection.cursor()
        try:
            for part in _parts(blocks, size):
                full = len(part) - len(part) % _ROWS_PER_INSERT
                if full:  # a C-contiguous block: the statements' parameters are a reshape
                    cursor.executemany(many, part[:full].reshape(-1, width).tolist())
                if full < len(part):
                    cursor.executemany(one, part[full:].tolist())
        finally:
            cursor.close()
        return
    if conn.dialect.name == "postgresql":
        # COPY through psycopg inside SQLAlchemy's transaction: the server's bulk path, ~10x
        # faster than executemany of INSERTs (300k rows: seconds instead of tens of seconds).
        names = ", ".join([*columns, *fixed])
        tail = list(fixed.values())
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for part in _parts(blocks, size):
                    for values in part.tolist():
                        copy.write_row(values + tail)
        finally:
            cursor.close()
        return
    stmt = table.insert().values(**fixed)
    for part in _parts(blocks, size):
        conn.execute(stmt, [dict(zip(columns, values, strict=True)) for values in part.tolist()])


def _parts(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The blocks cut into row slices of at most `size` rows (views, in order)."""
    for block in blocks:
        for lo in range(0, len(block), size):
            yield block[lo : lo + size]


def _read(engine: Engine, query: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query, params or {})
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def read_current_scores(engine: Engine) -> pd.DataFrame:
    """The `lead_scores` table (one row per lead of the latest run)."""
    return _read(engine, select(lead_scores).order_by(lead_scores.c.lead_id))


def read_history(engine: Engine, scoring_date: date | None = None) -> pd.DataFrame:
    """`lead_score_history`, all of it or one scoring date."""
    query = select(lead_score_history)
    if scoring_date is not None:
        query = query.where(lead_score_history.c.scoring_date == scoring_date)
    return _read(
        engine, query.order_by(lead_score_history.c.scoring_date, lead_score_history.c.lead_id)
    )


def read_runs(engine: Engine) -> pd.DataFrame:
    """`scoring_runs`, oldest first."""
    return _read(engine, select(scoring_runs).order_by(scoring_runs.c.id))


def previous_scores(engine: Engine, scoring_date: date) -> pd.DataFrame:
    """Scores of the latest run strictly before `scoring_date` (columns lead_id, score).

    Read from the history, not `lead_scores`, so re-running a date computes the same changes.
    Empty when there is no earlier run or no database yet.
    """
    empty = pd.DataFrame({"lead_id": pd.Series(dtype=object), "score": pd.Series(dtype=float)})
    if not _has_table(engine, "lead_score_history"):
        return empty
    h = lead_score_history
    prev = select(h.c.scoring_date).where(h.c.scoring_date < scoring_date)
    prev_date = _read(engine, prev.order_by(h.c.scoring_date.desc()).limit(1))
    if prev_date.empty:
        return empty
    day = prev_date.iloc[0, 0]
    if stores.is_sqlite(engine):
        with engine.connect() as conn:
            dbapi = conn.connection.driver_connection
            packed = _previous_packed(dbapi, _bind_date(engine, day))
            if packed is not None:
                return packed
            # A million (lead_id, score) pairs: the DBAPI cursor skips SQLAlchemy's per-row Row
            # objects and result processing (seconds at that size); both columns need none.
            cursor = dbapi.execute(
                "SELECT lead_id, score FROM lead_score_history WHERE scoring_date = ?",
                (_bind_date(engine, day),),
            )
            return pd.DataFrame(cursor.fetchall(), columns=["lead_id", "score"])
    query = select(h.c.lead_id, h.c.score).where(h.c.scoring_date == day)
    return _read(engine, query)


_UNIT_SEPARATOR = "\x1f"


def _previous_packed(dbapi: Any, day: Any) -> pd.DataFrame | None:
    """previous_scores' rows of `day` read by SQLite in one step: the ids joined into one text
    and the scores as whole tenths, so the scan runs in C without the GIL (the rows are read
    while the run's first chunk is scored, in another thread) and no row becomes a Python
    tuple. None when that is not exact: a lead_id holding the separator, a score that is not
    k/10 exactly (every score batch scoring writes is, round(p * 100, 1)); the caller then
    reads the rows one by one. k / 10 in numpy is the same IEEE division as SQLite's check."""
    try:
        rows, ids, tenths, inexact = dbapi.execute(
            "SELECT count(*), group_concat(lead_id, char(31)), "
            "group_concat(CAST(round(score * 10) AS INTEGER), ','), "
            "sum(score IS NULL OR typeof(score) <> 'real' OR score <> round(score * 10) / 10.0) "
            "FROM lead_score_history WHERE scoring_date = ?",
            (day,),
        ).fetchone()
    except sqlite3.DataError:  # SQLITE_TOOBIG: more ids than one text may hold
        return None
    if not rows or inexact:
        return None
    lead_ids = ids.split(_UNIT_SEPARATOR)
    scores = np.fromstring(tenths, dtype=np.int64, sep=",")
    if len(lead_ids) != rows or len(scores) != rows:
        return None
    return pd.DataFrame({"lead_id": np.array(lead_ids, dtype=object), "score": scores / 10.0})


def _has_table(engine: Engine, name: str) -> bool:
    from sqlalchemy import inspect

    try:
        return inspect(engine).has_table(name)
    except Exception:  # noqa: BLE001 - a read-only open of a missing file: no table
        return False
