"""The attribute history is optional: an export without lead_attribute_changes.csv builds, and its
features carry the leads' current values. (The as-of logic itself: the unit test of
int_lead_attributes_snapshotted and test_dbt_point_in_time.py.)"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pandas as pd
import pytest
from _dbt_helpers import AS_OF

from ml.config import Settings
from ml.contract import ATTRIBUTE_FIELDS
from ml.data.landing import validate_landing_zone
from ml.warehouse import BuildSummary, build_warehouse


@pytest.fixture(scope="module")
def without_history(small_data: Callable[[str], Settings]) -> tuple[Settings, BuildSummary]:
    settings = small_data("no_history")
    changes = settings.paths.raw_dir / "lead_attribute_changes.csv"
    assert len(changes.read_text().splitlines()) > 1, "the fixture needs generated changes"
    changes.unlink()
    return settings, build_warehouse(settings, as_of=AS_OF)


def test_landing_zone_accepts_an_export_without_history(without_history) -> None:
    settings, _ = without_history
    report = validate_landing_zone(settings.paths.raw_dir)
    landed = report.files["lead_attribute_changes"]
    assert not landed.present and landed.rows == 0
    assert report.files["leads"].present and report.files["leads"].rows > 0


def test_build_without_history_uses_current_values(without_history) -> None:
    settings, summary = without_history
    assert summary.raw_rows["lead_attribute_changes"] == 0
    assert summary.mart_rows["lead_features"] > 0
    features = pd.read_parquet(summary.marts["lead_features"])
    leads = pd.read_csv(settings.paths.raw_dir / "leads.csv").set_index("lead_id")
    current = leads.loc[features["lead_id"], list(ATTRIBUTE_FIELDS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        features[list(ATTRIBUTE_FIELDS)].astype(str), current.astype(str), check_dtype=False
    )
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    try:
        assert con.sql("select count(*) from stg_crm__lead_attribute_changes").fetchall() == [(0,)]
    finally:
        con.close()
