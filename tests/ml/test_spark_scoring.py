"""Batch scoring on Spark (ml/spark/scoring.py) gives exactly the single-machine scores, tiers and
reasons, and writes the same CRM tables through the store layer. Marked `spark` (Java 17 and the
`spark` extra); CI runs it in its Spark step."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scoring_fixtures import make_features, make_scorer

from ml import crm
from ml.config import Settings, load_settings
from ml.scoring import batch_score, score_frame
from ml.spark import spark_available

pytestmark = pytest.mark.spark

SCORED_AT = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def spark_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    if not spark_available():
        message = "Spark needs Java 17 and pyspark (the `spark` extra; make demo-spark)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI runs the Spark tests: {message}")
        pytest.skip(message)
    data_dir = tmp_path_factory.mktemp("spark_scoring")
    return load_settings(
        overrides={"paths.data_dir": str(data_dir), "engine": "spark", "spark.small_data": True}
    )


@pytest.fixture(scope="module")
def features(spark_settings: Settings) -> tuple[pd.DataFrame, Path]:
    """2,000 leads with missing values, as a Parquet of latest features."""
    frame = make_features(2000, seed=5)
    rng = np.random.default_rng(6)
    for col in ["company_size", "engagement_score", "days_since_last_activity", "industry"]:
        frame[col] = frame[col].astype(object).where(rng.random(len(frame)) > 0.1, None)
    frame["company_size"] = frame["company_size"].astype("Int64")
    frame["engagement_score"] = frame["engagement_score"].astype("Float64")
    frame["days_since_last_activity"] = frame["days_since_last_activity"].astype("Float64")
    path = spark_settings.paths.data_dir / "lead_features_latest.parquet"
    frame.to_parquet(path, index=False)
    return pd.read_parquet(path), path


def test_spark_scores_equal_single_machine_scores(spark_settings, features) -> None:
    from ml.spark.scoring import spark_score_frame

    frame, path = features
    scorer, _ = make_scorer()
    expected = score_frame(scorer, frame, spark_settings).sort_values("lead_id")
    got = spark_score_frame(spark_settings, scorer, path)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)
    assert (expected["reasons_for"] != "[]").mean() > 0.5  # the comparison is not vacuous


def test_spark_run_writes_the_same_crm_tables(spark_settings, features, tmp_path) -> None:
    from ml.spark.scoring import spark_score_frame

    frame, path = features
    scorer, _ = make_scorer()
    local = load_settings(overrides={"paths.data_dir": str(tmp_path / "local")})
    batch_score(local, frame, scorer, "1", SCORED_AT, "run-1")
    spark_scores = spark_score_frame(spark_settings, scorer, path)
    batch_score(spark_settings, frame, scorer, "1", SCORED_AT, "run-1", scores=spark_scores)
    tables = []
    for settings in (local, spark_settings):
        engine = crm.crm_engine(settings, read_only=True)
        try:
            tables.append(crm.read_current_scores(engine).sort_values("lead_id"))
        finally:
            engine.dispose()
    assert len(tables[0]) == len(frame)
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in tables), check_exact=True)


def test_scores_that_miss_leads_are_refused(spark_settings, features) -> None:
    from ml.errors import DataError

    frame, _ = features
    scorer, _ = make_scorer()
    partial = score_frame(scorer, frame.iloc[:-1], spark_settings)
    with pytest.raises(DataError, match="do not cover"):
        batch_score(spark_settings, frame, scorer, "1", SCORED_AT, "run-2", scores=partial)
