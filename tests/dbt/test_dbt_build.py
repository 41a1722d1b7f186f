"""dbt build on generated data: green, row conservation, contracted marts, parse without data."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from _dbt_helpers import small_settings

from ml.contract import FEATURES
from ml.warehouse import MARTS, RAW_FILES, BuildSummary, rejected_counts, run_dbt

FEATURE_COLUMNS = ["lead_id", "snapshot_ts", *FEATURES]
LABEL_COLUMNS = [
    "lead_id",
    "snapshot_ts",
    "converted_within_window",
    "converted_at",
    "label_window_days",
]


def _raw_count(path: Path) -> int:
    # counted independently of dbt, with the same tolerant reader settings
    return duckdb.sql(
        f"select count(*) from read_csv('{path}', all_varchar = true, header = true)"
    ).fetchall()[0][0]


def test_build_is_green_and_publishes_every_mart(warehouse: BuildSummary) -> None:
    assert set(warehouse.marts) == set(MARTS)
    for name, path in warehouse.marts.items():
        assert path.is_file(), name
        assert warehouse.mart_rows[name] > 0, name
    assert warehouse.as_of is not None


def test_accepted_plus_rejected_equals_raw(pipeline_settings, warehouse: BuildSummary) -> None:
    rejected = rejected_counts(pipeline_settings)
    for name in RAW_FILES:
        raw = _raw_count(pipeline_settings.paths.raw_dir / f"{name}.csv")
        assert warehouse.raw_rows[name] == raw, name
        assert warehouse.accepted_rows[name] + rejected[name] == raw, name
        assert warehouse.accepted_rows[name] > 0, name


def test_marts_hold_exactly_the_contract_columns(warehouse: BuildSummary) -> None:
    features = pd.read_parquet(warehouse.marts["lead_features"])
    latest = pd.read_parquet(warehouse.marts["lead_features_latest"])
    labels = pd.read_parquet(warehouse.marts["lead_labels"])
    assert list(features.columns) == FEATURE_COLUMNS
    assert list(latest.columns) == FEATURE_COLUMNS
    assert list(labels.columns) == LABEL_COLUMNS
    assert not features.duplicated(["lead_id", "snapshot_ts"]).any()
    assert latest["lead_id"].is_unique
    assert latest["snapshot_ts"].nunique() == 1
    assert features["engagement_score"].between(0, 100).all()
    assert set(labels["converted_within_window"].unique()) <= {0, 1}


def test_snapshots_are_mondays_plus_the_as_of(warehouse: BuildSummary) -> None:
    snapshots = pd.read_parquet(warehouse.marts["lead_features"], columns=["snapshot_ts"])
    ts = pd.DatetimeIndex(snapshots["snapshot_ts"].unique())
    as_of = pd.Timestamp(warehouse.as_of)
    grid = ts[ts != as_of]
    assert (grid.dayofweek == 0).all() and (grid == grid.normalize()).all()
    assert as_of in ts
    assert ts.max() == as_of


def test_labels_only_for_matured_windows(pipeline_settings, warehouse: BuildSummary) -> None:
    labels = pd.read_parquet(warehouse.marts["lead_labels"])
    window = pd.Timedelta(days=pipeline_settings.features.label_window_days)
    assert (labels["snapshot_ts"] + window <= pd.Timestamp(warehouse.as_of)).all()
    converted = labels[labels["converted_within_window"] == 1]
    assert len(converted) > 0
    assert (converted["converted_at"] > converted["snapshot_ts"]).all()
    assert (converted["converted_at"] <= converted["snapshot_ts"] + window).all()


def test_dbt_parse_needs_no_data(tmp_path: Path) -> None:
    # the Dagster integration loads the manifest before any data exists
    settings = small_settings(tmp_path / "empty")
    result = run_dbt(settings, ["parse"])
    assert result.ok
    assert (tmp_path / "empty" / "warehouse" / "dbt_target" / "manifest.json").is_file()
    assert not (tmp_path / "empty" / "raw").exists()
