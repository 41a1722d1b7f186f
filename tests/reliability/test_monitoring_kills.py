"""kill -9 inside a monitoring run: the date's figures in the monitoring store and its report
files stay those of the previous complete run (never some scopes or files new and some old,
never a truncated page), and the re-run completes."""

from __future__ import annotations

import json
import pathlib
from datetime import date

import pandas as pd
import pytest
from _kill import kill_at
from _models import linear_scorer
from _scoring_fixtures import make_features

from ml.config import Settings, load_settings
from ml.monitoring import reports, store
from ml.monitoring import run as monitoring_run
from ml.monitoring.reference import Reference

RUN_DATE = date(2026, 10, 1)


@pytest.fixture
def settings(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(monitoring_run, "_load_model", lambda s, v: (linear_scorer(), "1"))
    monkeypatch.setattr(reports, "log_to_champion_run", lambda *a: None)
    return load_settings(overrides={"paths.data_dir": str(tmp_path),
                                    "monitoring.report_sample_size": 300}, env={})


def reference() -> Reference:
    scorer = linear_scorer()
    frame = make_features(600, seed=11)[scorer.feature_names]
    return Reference(frame, scorer.predict_proba(frame), "test", "test reference")


def current(drifted: bool) -> pd.DataFrame:
    frame = make_features(400, seed=12)
    if drifted:  # every figure of the run changes
        frame["engagement_score"] = frame["engagement_score"] / 3
        frame["n_pricing_page_view_7d"] = frame["n_pricing_page_view_7d"] * 4
    return frame


def monitor(settings: Settings, drifted: bool, reports_too: bool) -> None:
    monitoring_run.run_monitoring(settings, RUN_DATE, current=current(drifted),
                                  reference=reference(), reports=reports_too)


def figures(settings: Settings) -> pd.DataFrame:
    rows = store.read_metrics(settings).drop(columns=["recorded_at"])
    return rows.sort_values(list(rows.columns), na_position="first").reset_index(drop=True)


def test_kill_9_while_recording_keeps_the_previous_figures_whole(settings) -> None:
    monitor(settings, drifted=False, reports_too=False)
    good = figures(settings)
    assert set(good["scope"]) >= {"data_drift", "prediction_drift"}
    # killed inside the store's transaction, two scopes replaced: nothing of it may remain
    kill_at(lambda: monitor(settings, drifted=True, reports_too=False),
            store, "_replace_scope", "after", nth=2)
    pd.testing.assert_frame_equal(figures(settings), good)
    monitor(settings, drifted=True, reports_too=False)
    again = figures(settings)
    assert len(again) == len(good) and not again.equals(good)  # replaced, not added to
    keys = ["run_id", "scope", "feature", "cohort", "metric"]
    assert not again.duplicated(keys).any()


@pytest.fixture(scope="module")
def snapshot():
    """A real Evidently snapshot (one column's value drift)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=["engagement_score"])
    return Report([ValueDrift(column="engagement_score")]).run(
        Dataset.from_pandas(current(True)[["engagement_score"]], data_definition=definition),
        Dataset.from_pandas(current(False)[["engagement_score"]], data_definition=definition))


def test_kill_9_mid_write_of_a_report_keeps_the_previous_report(tmp_path, snapshot) -> None:
    html, js = reports._save(snapshot, tmp_path / "data_drift", "run 1")
    good = {p.name: p.read_bytes() for p in (html, js)}
    # the page is cut short by a kill half-way through writing it
    kill_at(lambda: reports._save(snapshot, tmp_path / "data_drift", "run 2"),
            pathlib.Path, "write_text", "during")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert after == good, "a report file changed or was torn by the kill"
    html, js = reports._save(snapshot, tmp_path / "data_drift", "run 2")  # the re-run
    assert html.read_bytes() != good[html.name] and "run 2" in html.read_text()
    assert html.read_text().rstrip().endswith("</html>") and json.loads(js.read_text())


def test_the_next_write_removes_what_a_killed_one_left(tmp_path, snapshot) -> None:
    (tmp_path / ".data_drift.html.999.tmp").write_text("<html><body>half a pa")
    (tmp_path / ".data_drift.json.999.tmp").write_text('{"metr')
    reports._save(snapshot, tmp_path / "data_drift", "run 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_drift.html", "data_drift.json"]
