"""The prediction log: every prediction the service makes (served or shadow), one row each.

Table `prediction_log` in the store at `settings.serving.prediction_log_url` (an SQLite file of
its own by default, WAL mode so the monitoring runs and the dashboard read while the service
writes; any SQLAlchemy URL in production). The service's only writer is `PredictionLogWriter`:
requests put rows on a bounded queue without waiting (a full queue drops the row and counts it),
and one daemon thread inserts them in batches: one transaction per `flush_seconds` at most, so
the log costs the service nothing per request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ml.config import Settings
from ml.monitoring.store import engine_for

log = logging.getLogger(__name__)

metadata = sa.MetaData()
prediction_log = sa.Table(
    "prediction_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("logged_at", sa.DateTime, nullable=False, index=True),  # UTC, request time
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("endpoint", sa.String(32), nullable=False),  # predict | predict_batch
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("mode", sa.String(8), nullable=False),  # off | shadow | canary | ab
    sa.Column("variant", sa.String(16), nullable=False),  # champion | challenger
    sa.Column("served", sa.Boolean, nullable=False),  # False: shadow score, never returned
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("tier", sa.String(1), nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("in_online_store", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # ok | error
    sa.Column("error", sa.Text, nullable=True),
)
COLUMNS = [c.name for c in prediction_log.columns if c.name != "id"]


def log_engine(url: str) -> sa.Engine:
    """An engine on the prediction-log store with the table created (SQLite: WAL mode)."""
    engine = engine_for(url)
    metadata.create_all(engine, checkfirst=True)
    return engine


def read_log(settings: Settings, since: datetime | None = None) -> pd.DataFrame:
    """The logged predictions (optionally from `since`, naive UTC), oldest first."""
    engine = log_engine(settings.serving.prediction_log_url)
    try:
        query = sa.select(prediction_log).order_by(prediction_log.c.id)
        if since is not None:
            query = query.where(prediction_log.c.logged_at >= since)
        with engine.connect() as conn:
            return pd.read_sql(query, conn)
    finally:
        engine.dispose()


class PredictionLogWriter:
    """Background writer: `submit` never blocks; rows are inserted in batches."""

    def __init__(self, url: str, max_queue: int = 100_000, flush_seconds: float = 0.5,
                 batch_rows: int = 5_000) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._engine: sa.Engine | None = None
        self._idle = threading.Event()

    def start(self) -> None:
        self._engine = log_engine(self.url)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows for writing; a row that does not fit is dropped (and counted)."""
        for row in rows:
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self.dropped += 1

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown)."""
        self._idle.clear()
        self._queue.put(None)  # a marker: the writer sets _idle when it reaches it
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self.flush(timeout)
        self._queue.put({"__stop__": True})
        self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        while True:
            try:
                item: dict[str, Any] | None = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                continue
            # Gather rows for up to flush_seconds after the first one (or batch_rows, or until a
            # flush marker): one transaction per flush, not one per request.
            deadline = time.monotonic() + self.flush_seconds
            batch: list[dict[str, Any]] = []
            markers = 0
            stop = False
            while True:
                if item is None:
                    markers += 1
                elif "__stop__" in item:
                    stop = True
                else:
                    batch.append(item)
                if markers or stop or len(batch) >= self.batch_rows:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            self._write(batch)
            if markers:
                self._idle.set()
            if stop:
                return

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        try:
            assert self._engine is not None
            with self._engine.begin() as conn:
                conn.execute(prediction_log.insert(), batch)
            self.written += len(batch)
        except Exception:  # the log must never take the service down
            self.failed += len(batch)
            log.exception("could not write %d prediction-log rows", len(batch))
