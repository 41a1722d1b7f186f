"""CRM database: atomic, idempotent runs; a kill -9 mid-write leaves the previous complete run;
read-only readers are not blocked by the writer (WAL; MVCC). Each test runs on SQLite and on
PostgreSQL (the `store_url` fixture, tests/conftest.py)."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from _scoring_fixtures import SCORED_AT, make_scores
from sqlalchemy import text

from ml import crm
from ml.config import PROJECT_ROOT, Settings, load_settings

D1, D2, D0 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 10, 25)
# Rows of the run the kill -9 test interrupts: enough for a write transaction of a few seconds
# (PostgreSQL writes them several times slower than SQLite; the test times the transaction
# first and lands its kills inside it).
BIG = {"sqlite": 300_000, "postgresql": 100_000}
# How long a writer process may take to start and mark its run 'running' (imports xgboost via the
# fixtures: ~10 s idle, over 60 s on a loaded 2-core CI box). Not what the tests measure.
START_TIMEOUT = 300.0

WRITER = """
import sys
from datetime import date
sys.path.insert(0, sys.argv[1])
from _scoring_fixtures import SCORED_AT, make_scores
from ml import crm
from ml.config import load_settings

data_dir, crm_url, day, n, seed, run_id = sys.argv[2:8]
settings = load_settings(overrides={"paths.data_dir": data_dir, "paths.crm_url": crm_url})
scores = make_scores(int(n), int(seed))
crm.write_scores(crm.crm_engine(settings), scores, date.fromisoformat(day), model_name="m",
                 model_version=seed, scored_at=SCORED_AT, run_id=run_id,
                 batch_size=settings.scoring.write_batch_size)
"""


@pytest.fixture
def settings(tmp_path: Path, store_url: Callable[[str], str]) -> Settings:
    return load_settings(
        overrides={"paths.data_dir": str(tmp_path), "paths.crm_url": store_url("crm")}
    )


def _write(settings: Settings, n: int, seed: int, day: date, run_id: str = "r") -> None:
    engine = crm.crm_engine(settings)
    crm.write_scores(
        engine,
        make_scores(n, seed),
        day,
        model_name="m",
        model_version=str(seed),
        scored_at=SCORED_AT,
        run_id=run_id,
    )
    engine.dispose()


def _fingerprint(settings: Settings) -> tuple[int, float, str | None, str | None]:
    """(rows, sum of scores, the model version if only one, scoring date) of lead_scores,
    read-only."""
    engine = crm.crm_engine(settings, read_only=True)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "select count(*), coalesce(sum(score), 0), min(model_version), "
                "max(model_version), max(scoring_date) from lead_scores"
            )
        ).one()
    version = row[2] if row[2] == row[3] else f"{row[2]}..{row[3]}"
    day = None if row[4] is None else str(row[4])  # SQLite: text; PostgreSQL: a date
    return int(row[0]), float(row[1]), version, day


def _expected(n: int, seed: int, day: date) -> tuple[int, float, str, str]:
    return n, float(make_scores(n, seed)["score"].sum()), str(seed), day.isoformat()


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-9) and a[2:] == b[2:]


def test_write_is_idempotent_per_scoring_date(settings: Settings) -> None:
    _write(settings, 500, seed=1, day=D1)
    _write(settings, 500, seed=2, day=D1)  # the same date again: replaces the run
    engine = crm.crm_engine(settings, read_only=True)
    history = crm.read_history(engine)
    current = crm.read_current_scores(engine)
    runs = crm.read_runs(engine)
    assert len(history) == 500 and set(history["scoring_date"]) == {D1}
    assert set(history["model_version"]) == {"2"}
    expected = make_scores(500, 2)
    assert current["lead_id"].tolist() == expected["lead_id"].tolist()
    assert current["score"].tolist() == expected["score"].tolist()
    assert current["score_change"].isna().sum() == expected["score_change"].isna().sum()
    assert runs["status"].tolist() == ["succeeded", "succeeded"]
    assert runs["rows"].tolist() == [500, 500]


def test_second_date_appends_history_and_backfill_keeps_current(settings: Settings) -> None:
    _write(settings, 300, seed=1, day=D1)
    _write(settings, 200, seed=2, day=D2)
    engine = crm.crm_engine(settings, read_only=True)
    assert crm.read_history(engine).groupby("scoring_date").size().to_dict() == {D1: 300, D2: 200}
    assert _same(_fingerprint(settings), _expected(200, 2, D2))
    prev = crm.previous_scores(engine, D2)
    assert len(prev) == 300  # the run before D2 is D1's
    _write(settings, 100, seed=3, day=D0)  # a backfill of an older date
    assert _same(_fingerprint(settings), _expected(200, 2, D2))
    assert len(crm.read_history(engine, D0)) == 100


def _start_writer(
    settings: Settings, day: date, n: int, seed: int, run_id: str
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(Path(__file__).parent),
            str(settings.paths.data_dir),
            settings.paths.crm_url,
            day.isoformat(),
            str(n),
            str(seed),
            run_id,
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_status(
    settings: Settings,
    run_id: str,
    statuses: set[str],
    proc: subprocess.Popen,
    timeout: float = 60.0,
) -> str:
    """Poll scoring_runs (read-only) until the run has one of `statuses`."""
    engine = crm.crm_engine(settings, read_only=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                status = conn.execute(
                    text("select status from scoring_runs where run_id = :r"), {"r": run_id}
                ).scalar()
            if status in statuses:
                return status
            if proc.poll() not in (None, 0):
                raise AssertionError(f"writer failed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
    finally:
        engine.dispose()
    raise AssertionError(f"run {run_id} never reached {statuses}")


def test_kill_9_mid_write_leaves_previous_complete_run(settings: Settings) -> None:
    big = BIG["postgresql" if settings.paths.crm_url.startswith("postgresql") else "sqlite"]
    _write(settings, 1_000, seed=1, day=D1)
    previous = _expected(1_000, 1, D1)
    new = _expected(big, 2, D2)
    # One uninterrupted run measures how long the write transaction takes on this machine, so
    # the kills below land inside it (after the 'running' mark, before the commit) ...
    proc = _start_writer(settings, D2, big, 2, "timing")
    _wait_for_status(settings, "timing", {"running"}, proc, timeout=START_TIMEOUT)
    t0 = time.monotonic()
    _wait_for_status(settings, "timing", {"succeeded"}, proc, timeout=120)
    duration = time.monotonic() - t0
    proc.wait(30)
    assert _same(_fingerprint(settings), new)
    # ... then restore D1 as the latest complete state and interrupt the D2 run repeatedly.
    engine = crm.crm_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            crm.lead_score_history.delete().where(crm.lead_score_history.c.scoring_date == D2)
        )
    engine.dispose()
    _write(settings, 1_000, seed=1, day=D1)
    assert _same(_fingerprint(settings), previous)

    rng = random.Random(7)
    interrupted = 0
    for attempt in range(3):
        run_id = f"kill-{attempt}"
        proc = _start_writer(settings, D2, big, 2, run_id)
        _wait_for_status(settings, run_id, {"running"}, proc, timeout=START_TIMEOUT)
        time.sleep(rng.uniform(0.15, 0.7) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        state = _fingerprint(settings)
        if _same(state, previous):
            interrupted += 1
        else:  # the kill came after the commit: then the new run must be whole
            assert _same(state, new), f"torn state after kill {attempt}: {state}"
            previous = new
        history = crm.read_history(crm.crm_engine(settings, read_only=True), D2)
        assert len(history) in (0, big)
    assert interrupted >= 1, "no kill landed inside the write transaction"
    # The next run of the same date completes and marks the killed ones as interrupted.
    _write(settings, big, seed=2, day=D2, run_id="final")
    assert _same(_fingerprint(settings), new)
    runs = crm.read_runs(crm.crm_engine(settings, read_only=True))
    assert "running" not in set(runs["status"])


def test_reader_is_not_blocked_by_the_writer(settings: Settings, monkeypatch) -> None:
    """Deterministic: the writer is held inside its transaction (history rows inserted, not
    committed) until the reader has read; a blocked reader would never return."""
    _write(settings, 1_000, seed=1, day=D1)
    inside, release = threading.Event(), threading.Event()
    insert_rows = crm._insert_rows

    def held(conn, table, *args, **kwargs):
        insert_rows(conn, table, *args, **kwargs)
        if table is crm.lead_score_history:
            inside.set()
            release.wait(300)

    monkeypatch.setattr(crm, "_insert_rows", held)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            _write(settings, 5_000, seed=2, day=D2, run_id="concurrent")
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
            inside.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert inside.wait(300) and not failures, failures
        seen: list[tuple] = []
        reader = threading.Thread(target=lambda: seen.append(_fingerprint(settings)))
        reader.start()
        reader.join(120)  # a reader that waits for the writer never returns: it is held
        assert not reader.is_alive(), "a read-only reader waited for the open write transaction"
        assert writer.is_alive()  # still inside its transaction while the reader read
        assert _same(seen[0], _expected(1_000, 1, D1)), "the reader saw uncommitted rows"
    finally:
        release.set()
        writer.join(300)
    assert not failures, failures
    assert _same(_fingerprint(settings), _expected(5_000, 2, D2))


def test_every_row_round_trips_through_the_multi_row_inserts(settings: Settings) -> None:
    """Chunks that are no multiple of the rows per INSERT: every value arrives, in every column
    (nulls included), and lead_scores shows exactly that run."""
    engine = crm.crm_engine(settings)
    expected = make_scores(1234, 7)
    crm.write_scores(engine, expected, D1, model_name="m", model_version="3",
                     scored_at=SCORED_AT, run_id="r", batch_size=333)
    history = crm.read_history(engine)
    current = crm.read_current_scores(engine)
    engine.dispose()
    for frame in (history, current):
        got = frame[list(crm.SCORE_FRAME_COLUMNS)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected[list(crm.SCORE_FRAME_COLUMNS)],
                                      check_dtype=False)
    assert set(history["run_id"]) == {"r"} and set(current["model_version"]) == {"3"}


def test_an_older_lead_scores_table_becomes_the_view(settings: Settings) -> None:
    """A CRM database of the version that kept lead_scores as a table: the next run replaces
    it by the view, and readers see the latest run as before."""
    engine = crm.crm_engine(settings)
    crm.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE lead_scores (lead_id VARCHAR(64) PRIMARY KEY, "
                          "score FLOAT)"))
        conn.execute(text("INSERT INTO lead_scores VALUES ('old', 1.0)"))
    _write(settings, 50, seed=1, day=D1)
    from sqlalchemy import inspect

    assert "lead_scores" in inspect(engine).get_view_names()
    assert _same(_fingerprint(settings), _expected(50, 1, D1))
    engine.dispose()


def _file_alone(path: Path, tmp: Path) -> tuple[int, float, str | None, str | None]:
    """The _fingerprint of a copy of the SQLite database file without its WAL."""
    import shutil
    import sqlite3

    copy = tmp / "file-alone.db"
    copy.unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        row = conn.execute("select count(*), coalesce(sum(score), 0), min(model_version), "
                           "max(scoring_date) from lead_scores").fetchone()
    conn.close()
    return int(row[0]), float(row[1]), row[2], row[3]


def test_a_big_run_commits_then_folds_its_wal_into_the_file(
    settings: Settings, monkeypatch, tmp_path: Path
) -> None:
    """SQLite, from crm.FOLD_AFTER_COMMIT_ROWS rows: the commit does not copy the run's WAL into
    the database file (the checkpoint a thread then runs finds the run committed and visible to
    readers, but not yet in the file); after the checkpoint the file alone holds it."""
    if not settings.paths.crm_url.startswith("sqlite"):
        pytest.skip("the WAL checkpoint is SQLite's")
    monkeypatch.setattr(crm, "FOLD_AFTER_COMMIT_ROWS", 10_000)
    path = Path(settings.paths.crm_url.removeprefix("sqlite:///"))
    _write(settings, 50, seed=1, day=D1)  # below the threshold: folded at the commit and close
    assert _same(_file_alone(path, tmp_path), _expected(50, 1, D1))
    seen: dict[str, tuple] = {}
    fold = crm._fold

    def observed(holder, run_id: str) -> None:
        seen["reader"] = _fingerprint(settings)
        seen["file alone"] = _file_alone(path, tmp_path)
        fold(holder, run_id)

    monkeypatch.setattr(crm, "_fold", observed)
    _write(settings, 20_000, seed=2, day=D2)  # a WAL of ~2,000 pages: SQLite's auto-checkpoint
    crm.wait_for_checkpoints()                # would have folded it at the commit
    assert _same(seen["reader"], _expected(20_000, 2, D2)), "readers do not see the commit"
    assert _same(seen["file alone"], _expected(50, 1, D1)), "the commit folded the WAL itself"
    assert _same(_file_alone(path, tmp_path), _expected(20_000, 2, D2)), "the WAL was not folded"


def test_previous_scores_are_exactly_the_stored_ones(settings: Settings, monkeypatch) -> None:
    """previous_scores (on SQLite read packed, as whole tenths) returns exactly the stored ids
    and scores, also when a row does not fit that shape (a score that is not k/10, an id with
    the separator): then row by row."""
    _write(settings, 2_000, seed=4, day=D1)
    engine = crm.crm_engine(settings)

    def stored() -> pd.DataFrame:
        with engine.connect() as conn:
            rows = conn.execute(text("select lead_id, score from lead_score_history "
                                     "where scoring_date = :d"), {"d": str(D1)}).fetchall()
        return pd.DataFrame(rows, columns=["lead_id", "score"]).sort_values("lead_id")

    packed: list[bool] = []
    real = crm._previous_packed
    monkeypatch.setattr(crm, "_previous_packed",
                        lambda *a: packed.append((out := real(*a)) is not None) or out)

    def check() -> None:
        got = crm.previous_scores(engine, D2).sort_values("lead_id")
        want = stored()
        assert got["lead_id"].tolist() == want["lead_id"].tolist()
        assert got["score"].to_numpy().tobytes() == want["score"].to_numpy(float).tobytes()

    check()
    with engine.begin() as conn:
        conn.execute(text("update lead_score_history set score = 0.1 + 0.2 "
                          "where lead_id = 'L0000007'"))
    check()  # 0.30000000000000004 is no k/10
    with engine.begin() as conn:
        conn.execute(text("update lead_score_history set score = 12.3, lead_id = :id "
                          "where lead_id = 'L0000007'"), {"id": "a\x1fb"})
    check()
    engine.dispose()
    assert packed == ([True, False, False] if engine.dialect.name == "sqlite" else [])
