"""Nightly increments in dbt: a rebuild over last night's warehouse redoes only the leads whose
inputs changed, and gets the same rows a full rebuild would: a late activity lands in the past
snapshots it belongs to, a late conversion closes the lead's later rows, a new lead appears.
(The build's own brute-force recount, assert_features_count_no_activity_after_snapshot, checks
every activity window of the incrementally built mart.)"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd
import pytest
from _dbt_helpers import generate_small, small_settings

from ml.contract import RAW_COLUMNS
from ml.landing.merge import merge_into_raw
from ml.warehouse import build_warehouse

LAST_NIGHT = datetime(2026, 10, 25)
TONIGHT = datetime(2026, 11, 1)


def _features(settings) -> pd.DataFrame:
    return pd.read_parquet(settings.paths.marts_dir / "lead_features.parquet")


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> dict:
    settings = small_settings(tmp_path_factory.mktemp("incremental"))
    generate_small(settings)
    build_warehouse(settings, as_of=LAST_NIGHT)
    before = _features(settings)
    # leads open on Monday 2026-10-19 and at least 30 days old then
    open_at = before[(before["snapshot_ts"] == pd.Timestamp("2026-10-19"))
                     & (before["days_since_created"] >= 30)]
    late_lead, closing = open_at["lead_id"].iloc[0], open_at["lead_id"].iloc[1]
    raw = settings.paths.raw_dir
    # tonight's increment, landed as `lead-scoring land --merge` does: activities as a part
    # file, one of them a correction of an activity landed before (its type was logged wrong)
    activities = pd.read_csv(raw / "activities.csv", dtype=str)
    fixed = activities[~activities["lead_id"].isin([late_lead, closing])
                       & (activities["activity_type"] != "document_upload")].iloc[[0]]
    columns = {name: list(cols) for name, cols in RAW_COLUMNS.items()}
    merge_into_raw({
        "activities": pd.DataFrame([
            ["LATE1", late_lead, "2026-10-18T10:00:00Z", "meeting_booked"],  # synced late
            ["NEW1", "L9000001", "2026-10-28T10:00:00Z", "pricing_page_view"],
        ], columns=columns["activities"]).pipe(
            lambda f: pd.concat([f, fixed.assign(activity_type="document_upload")])),
        "leads": pd.DataFrame([["L9000001", "2026-10-27T09:00:00Z", "Web", "Media", "5", "India",
                                "Media", "1", "<25k"]], columns=columns["leads"]),
        "conversions": pd.DataFrame([[closing, "2026-10-01T09:00:00Z", "9000"]],
                                    columns=columns["conversions"]),
    }, raw)
    build_warehouse(settings, as_of=TONIGHT)
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    changed = {r[0] for r in con.execute("select lead_id from int_leads_changed").fetchall()}
    n_leads = con.execute("select count(*) from stg_crm__leads").fetchone()[0]
    fixed_id = fixed["activity_id"].iloc[0]
    versions = con.execute(
        "select activity_type, rejection_reason, source_file_raw from base_crm__activities "
        "where activity_id = ? order by rejection_reason nulls first", [fixed_id]
    ).fetchall()
    con.close()
    return {"before": before, "after": _features(settings), "changed": changed,
            "n_leads": n_leads, "late": late_lead, "closing": closing,
            "fixed": fixed.iloc[0], "versions": versions}


def test_only_changed_leads_are_redone(nightly: dict) -> None:
    assert {nightly["late"], nightly["closing"], "L9000001", nightly["fixed"]["lead_id"]} <= (
        nightly["changed"])
    assert len(nightly["changed"]) < nightly["n_leads"] / 2


def test_a_late_activity_counts_in_past_snapshots(nightly: dict) -> None:
    key = ["lead_id", "snapshot_ts"]
    before = nightly["before"].set_index(key)["n_meeting_booked_7d"]
    after = nightly["after"].set_index(key)["n_meeting_booked_7d"]
    row = (nightly["late"], pd.Timestamp("2026-10-19"))
    assert after[row] == before[row] + 1


def test_a_late_conversion_closes_later_rows_and_new_leads_appear(nightly: dict) -> None:
    after = nightly["after"]
    closed = after[after["lead_id"] == nightly["closing"]]
    assert closed["snapshot_ts"].max() < pd.Timestamp("2026-10-01 09:00")
    assert (after["lead_id"] == "L9000001").sum() == 1  # tonight's as-of row
    assert after["snapshot_ts"].max() == pd.Timestamp(TONIGHT)
    assert pd.Timestamp(LAST_NIGHT) not in set(after["snapshot_ts"])  # yesterday's as-of is gone


def test_an_activity_landed_again_supersedes_the_older_row(nightly: dict) -> None:
    """An increment's part file upserts by activity id: its row is accepted, the row of
    activities.csv it corrects is quarantined as superseded (and the rows still add up: the
    build's rows_add_up test)."""
    (new_type, accepted, _), (old_type, reason, source) = nightly["versions"]
    assert (new_type, accepted) == ("document_upload", None)
    assert (old_type, reason, source) == (nightly["fixed"]["activity_type"], "superseded",
                                          "activities.csv")
    lead = nightly["fixed"]["lead_id"]
    at = pd.Timestamp(nightly["fixed"]["occurred_at"]).tz_localize(None)
    after = nightly["after"]
    later = after[(after["lead_id"] == lead) & (after["snapshot_ts"] > at)
                  & (after["snapshot_ts"] <= at + pd.Timedelta(days=7))]
    assert len(later) and (later["n_document_upload_7d"] >= 1).all()
