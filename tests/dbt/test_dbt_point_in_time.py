"""Point in time: data stamped after a snapshot never changes that snapshot's features (activities,
conversions, attribute edits); a failed build never replaces the published marts."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from _dbt_helpers import AS_OF, append_rows, read_csv_rows

from ml.config import Settings
from ml.contract import ACTIVITY_TYPES, BUDGET_BANDS
from ml.errors import DataError
from ml.warehouse import MARTS, build_warehouse

T = datetime(2026, 10, 5)  # a Monday snapshot with four weeks of data after it


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def before_after(small_data: Callable[[str], Settings]):
    """Build; append activities and a conversion stamped after T, and edit a lead's budget band a
    day after T (a change row, and its new current value in leads.csv); rebuild, same as_of."""
    settings = small_data("pit")
    first = build_warehouse(settings, as_of=AS_OF)
    before = pd.read_parquet(first.marts["lead_features"])

    open_at_t = before.loc[before["snapshot_ts"] == pd.Timestamp(T), "lead_id"].tolist()
    assert len(open_at_t) >= 10, "the fixture needs leads open at T"
    converted = {r["lead_id"] for r in read_csv_rows(settings.paths.raw_dir / "conversions.csv")}
    converter = next(lead for lead in open_at_t if lead not in converted)
    late = [T + timedelta(seconds=1), T + timedelta(hours=5), T + timedelta(days=3)]
    append_rows(
        settings.paths.raw_dir / "activities.csv",
        [
            [f"ALATE{i:05d}", lead, _iso(ts), ACTIVITY_TYPES[i % len(ACTIVITY_TYPES)]]
            for i, (lead, ts) in enumerate((lead, ts) for lead in open_at_t[:10] for ts in late)
        ],
    )
    append_rows(
        settings.paths.raw_dir / "conversions.csv",
        [[converter, _iso(T + timedelta(days=2)), "25000"]],
    )
    edited, new_band = _edit_budget_band_after_t(settings, before, exclude={converter})

    second = build_warehouse(settings, as_of=AS_OF)
    after = pd.read_parquet(second.marts["lead_features"])
    return settings, before, after, converter, open_at_t[:10], (edited, new_band)


def _edit_budget_band_after_t(
    settings: Settings, before: pd.DataFrame, exclude: set[str]
) -> tuple[str, str]:
    """What a CRM export shows after a sales call at T + 1 day revised a lead's budget band: a
    row in the change history and the new value in leads.csv. The lead is open at T and a week
    later, and has no other change."""
    raw = settings.paths.raw_dir
    history = {r["lead_id"] for r in read_csv_rows(raw / "lead_attribute_changes.csv")}
    next_t = pd.Timestamp(T + timedelta(days=7))
    open_both = set(before.loc[before["snapshot_ts"] == pd.Timestamp(T), "lead_id"]) & set(
        before.loc[before["snapshot_ts"] == next_t, "lead_id"]
    )
    lead = sorted(open_both - history - exclude)[0]
    leads = pd.read_csv(raw / "leads.csv", dtype=str, keep_default_na=False)
    row = leads["lead_id"] == lead
    old = leads.loc[row, "budget_band"].item()
    new = next(band for band in BUDGET_BANDS if band != old)
    leads.loc[row, "budget_band"] = new
    leads.to_csv(raw / "leads.csv", index=False)
    append_rows(
        raw / "lead_attribute_changes.csv",
        [[lead, _iso(T + timedelta(days=1)), "budget_band", old, new]],
    )
    return lead, new


def _upto(frame: pd.DataFrame, ts: datetime) -> pd.DataFrame:
    return (
        frame[frame["snapshot_ts"] <= pd.Timestamp(ts)]
        .sort_values(["lead_id", "snapshot_ts"])
        .reset_index(drop=True)
    )


def test_features_at_or_before_t_do_not_change(before_after) -> None:
    _, before, after, _, _, _ = before_after
    pd.testing.assert_frame_equal(_upto(before, T), _upto(after, T))


def test_the_late_data_was_accepted_and_used_after_t(before_after) -> None:
    # proves the test above could fail: the same rebuild does change later snapshots
    _, before, after, converter, touched, _ = before_after
    next_t = pd.Timestamp(T + timedelta(days=7))
    assert len(after) < len(before)  # the converter left every snapshot after its conversion
    assert not ((after["lead_id"] == converter) & (after["snapshot_ts"] > pd.Timestamp(T))).any()
    totals = [f"n_{t}_7d" for t in ACTIVITY_TYPES]
    b = before[(before["snapshot_ts"] == next_t) & before["lead_id"].isin(touched)]
    a = after[(after["snapshot_ts"] == next_t) & after["lead_id"].isin(touched)]
    assert a[totals].to_numpy().sum() > b[totals].to_numpy().sum()


def test_a_budget_band_edited_after_t_changes_only_later_snapshots(before_after) -> None:
    # with the test above (snapshots <= T unchanged) this is the guarantee: an edit after T
    _, before, after, _, _, (lead, new_band) = before_after
    b = before[before["lead_id"] == lead].set_index("snapshot_ts")["budget_band"]
    a = after[after["lead_id"] == lead].set_index("snapshot_ts")["budget_band"]
    t = pd.Timestamp(T)
    assert a[a.index <= t].equals(b[b.index <= t]) and (a[a.index <= t] != new_band).all()
    later = a[a.index > t]
    assert len(later) > 0 and (later == new_band).all()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_failed_build_keeps_the_previous_marts(before_after, tmp_path: Path) -> None:
    settings, _, _, _, _, _ = before_after
    # a copy, so this test cannot disturb the others of the module
    data_dir = tmp_path / "data"
    shutil.copytree(settings.paths.data_dir, data_dir)
    copy = settings.model_copy(
        update={
            "paths": settings.paths.model_copy(
                update={
                    "data_dir": data_dir,
                    "raw_dir": data_dir / "raw",
                    "warehouse": data_dir / "warehouse" / "warehouse.duckdb",
                    "marts_dir": data_dir / "marts",
                }
            )
        }
    )
    published = {name: _digest(copy.paths.marts_dir / f"{name}.parquet") for name in MARTS}
    # a leads.csv without its budget_band column: the build stops before any model, naming it
    leads = copy.paths.raw_dir / "leads.csv"
    frame = pd.read_csv(leads, dtype=str, keep_default_na=False)
    frame.drop(columns=["budget_band"]).to_csv(leads, index=False)

    with pytest.raises(DataError, match=r"leads\.csv: the first line is not the header"):
        build_warehouse(copy, as_of=AS_OF)
    assert {name: _digest(copy.paths.marts_dir / f"{name}.parquet") for name in MARTS} == published
    assert not list(copy.paths.marts_dir.glob(".*tmp*"))
