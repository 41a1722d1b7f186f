"""kill -9 at every stage of a nightly scoring run (CRM write and extract), then re-run.

Invariants after every kill: the CRM tables hold the previous complete run or the new complete
run (never a mix; counted and checksummed), every date's extract is that date's committed run
once the next run has started (the run is one unit: database rows and extract file), and the
re-run completes with nothing duplicated or lost.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from _kill import kill_at
from _models import linear_scorer
from _scoring_fixtures import SCORED_AT, make_features

from ml import crm, scoring
from ml.config import Settings, load_settings

D1 = SCORED_AT
D2 = SCORED_AT + timedelta(days=1)
D3 = SCORED_AT + timedelta(days=2)

# (module, function, before/after): the points of a run, in order.
POINTS = [
    (crm, "previous_scores", "after"),  # scored, nothing written yet
    (scoring, "_seal_extract", "after"),  # extract on disk, CRM transaction under way
    (crm, "_insert_rows", "after"),  # inside the CRM transaction, history rows inserted
    (crm, "write_scores", "after"),  # CRM committed, extract not yet in place
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(tmp_path)})


def _run(settings: Settings, when, n: int, seed: int, run_id: str) -> scoring.ScoringRunSummary:
    return scoring.batch_score(settings, make_features(n, seed), linear_scorer(), "1", when, run_id)


def checksum(frame: pd.DataFrame) -> tuple[int, int, float]:
    """(rows, distinct leads, sum of scores): equal for the same run, different if rows were
    lost, duplicated or taken from another run."""
    return len(frame), frame["lead_id"].nunique(), round(float(frame["score"].sum()), 6)


def extract_is_committed_run(settings: Settings, day) -> bool:
    """The extract of `day` holds exactly the CRM history of `day` (same run, same rows)."""
    path = scoring.extract_path(settings, day.date())
    history = crm.read_history(crm.crm_engine(settings, read_only=True), day.date())
    if not path.is_file():
        return history.empty
    extract = pd.read_parquet(path)
    return (checksum(extract) == checksum(history)
            and set(extract["run_id"]) == set(history["run_id"])
            and sorted(extract["lead_id"]) == sorted(history["lead_id"]))


@pytest.mark.parametrize("point", POINTS, ids=[f"{w}-{n}" for _, n, w in POINTS])
def test_kill_9_anywhere_in_a_run_keeps_tables_and_extract_one_unit(settings, point) -> None:
    module, name, when = point
    _run(settings, D1, 300, seed=1, run_id="night-1")
    engine = crm.crm_engine(settings, read_only=True)
    before = checksum(crm.read_current_scores(engine))

    kill_at(lambda: _run(settings, D2, 320, seed=2, run_id="night-2"), module, name, when)

    current = crm.read_current_scores(engine)
    committed = name == "write_scores"
    assert checksum(current) == (checksum(crm.read_history(engine, D2.date())) if committed
                                 else before), "lead_scores is neither the old nor the new run"
    assert set(current["scoring_date"].astype(str)) <= {str(D1.date()), str(D2.date())}
    assert extract_is_committed_run(settings, D1)

    # The next night's run starts by finishing what the kill left; it completes.
    _run(settings, D3, 330, seed=3, run_id="night-3")
    for day in (D1, D2, D3):
        assert extract_is_committed_run(settings, day), f"extract of {day.date()} is not its run"
    assert not (scoring.extract_path(settings, D1.date()).parent / ".pending").exists()

    # Re-running the killed date completes; history has each lead once per date.
    _run(settings, D2, 320, seed=2, run_id="night-2-again")
    history = crm.read_history(engine)
    assert history.groupby("scoring_date").size().tolist() == [300, 320, 330]
    assert not history.duplicated(["scoring_date", "lead_id"]).any()
    assert extract_is_committed_run(settings, D2)
    runs = crm.read_runs(engine)
    assert "running" not in set(runs["status"])


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_around_the_wal_checkpoint_after_the_commit_keeps_the_run(
    settings, monkeypatch, when
) -> None:
    """A big run's commit leaves its WAL checkpoint to a thread (crm.FOLD_AFTER_COMMIT_ROWS,
    lowered here): a kill -9 before or after it keeps the committed run, whole, for every reader
    and the next run, which puts its extract in place."""
    monkeypatch.setattr(crm, "FOLD_AFTER_COMMIT_ROWS", 1)
    _run(settings, D1, 300, seed=1, run_id="night-1")

    def night_2() -> None:
        _run(settings, D2, 320, seed=2, run_id="night-2")
        crm.wait_for_checkpoints()  # the kill lands in the checkpoint's thread

    kill_at(night_2, crm, "_fold", when)

    engine = crm.crm_engine(settings, read_only=True)
    current = crm.read_current_scores(engine)
    assert checksum(current) == checksum(crm.read_history(engine, D2.date()))
    assert len(current) == 320
    assert set(crm.read_history(engine, D2.date())["run_id"]) == {"night-2"}
    # (its extract may still be pending: the kill can come before batch_score put it in place)
    _run(settings, D3, 330, seed=3, run_id="night-3")
    crm.wait_for_checkpoints()
    history = crm.read_history(engine)
    assert history.groupby("scoring_date").size().tolist() == [300, 320, 330]
    for day in (D1, D2, D3):
        assert extract_is_committed_run(settings, day), f"extract of {day.date()} is not its run"
