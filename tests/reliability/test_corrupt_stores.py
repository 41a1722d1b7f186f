"""Damaged or missing stores: a truncated SQLite file (the CRM database, the prediction log), a
missing mart, an empty registry. Each is a clear error naming the store, and the step that met
it wrote nothing (no new extract, no monitoring figures or report files, CRM untouched)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from _models import linear_scorer
from _scoring_fixtures import SCORED_AT, make_features

from ml import batch, crm, registry, scoring, stores
from ml.config import Settings, load_settings
from ml.errors import DataError, StoreError
from ml.monitoring import run as monitoring_run
from ml.monitoring.reference import Reference
from ml.monitoring.store import read_metrics
from ml.registry import RegistryError

D1, D2 = SCORED_AT, SCORED_AT + timedelta(days=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(tmp_path)}, env={})


def truncate(path: Path) -> bytes:
    """Cut an SQLite file to a third of its size, its WAL checkpointed and gone first (a copy
    interrupted mid-way, or a full disk); returns the damaged bytes."""
    stores.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.truncate(path, max(path.stat().st_size // 3, 4096))
    return path.read_bytes()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def crm_file(settings: Settings) -> Path:
    return Path(str(settings.paths.crm_url).removeprefix("sqlite:///"))


def test_truncated_crm_database_is_named_and_nothing_is_written(settings) -> None:
    scoring.batch_score(settings, make_features(200, 1), linear_scorer(), "1", D1, "night-1")
    path = crm_file(settings)
    damaged = truncate(path)
    extracts = scoring.extract_path(settings, D1.date()).parent
    before = folder_bytes(extracts)
    with pytest.raises(StoreError, match=rf"{path}.*(damaged|truncated)"):
        scoring.batch_score(settings, make_features(220, 2), linear_scorer(), "1", D2, "night-2")
    assert folder_bytes(extracts) == before, "an extract was written for a run that failed"
    assert path.read_bytes() == damaged, "the damaged database was written to"
    with pytest.raises(StoreError, match=str(path)):  # the readers (dashboard, A/B report)
        crm.read_current_scores(crm.crm_engine(settings, read_only=True))


def test_truncated_prediction_log_is_named_and_monitoring_writes_nothing(settings) -> None:
    from ml.serving.prediction_log import log_engine

    url = settings.serving.prediction_log_url
    log_engine(url).dispose()  # the log as the service creates it
    path = Path(url.removeprefix("sqlite:///"))
    truncate(path)
    scorer = linear_scorer()
    reference = make_features(400, 11)[scorer.feature_names]
    ref = Reference(reference, scorer.predict_proba(reference), "test", "test")
    monitoring_run_date = D2.date()
    report_dir = settings.paths.reports_dir / "monitoring" / monitoring_run_date.isoformat()
    original = monitoring_run._load_model
    monitoring_run._load_model = lambda s, v: (scorer, "1")
    try:
        with pytest.raises(StoreError, match=rf"{path}.*(damaged|truncated)"):
            monitoring_run.run_monitoring(settings, monitoring_run_date,
                                          current=make_features(300, 12), reference=ref)
    finally:
        monitoring_run._load_model = original
    assert read_metrics(settings).empty, "figures were recorded by a run that failed"
    assert not report_dir.exists(), "report files were written by a run that failed"


def test_missing_mart_is_named(settings) -> None:
    path = settings.paths.marts_dir / "lead_features_latest.parquet"
    with pytest.raises(DataError, match=str(path)):
        batch.load_latest_features(settings)


def test_empty_registry_says_there_is_no_champion_and_scores_nothing(settings) -> None:
    registry.mlflow_client(settings, create=True)  # an MLflow store with no model in it
    with pytest.raises(RegistryError, match="champion"):
        batch.score_open_leads(settings, D1.date())
    assert not (settings.paths.data_dir / "crm").exists(), "the CRM was touched"
