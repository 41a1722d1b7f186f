"""kill -9 inside a nightly merge (`lead-scoring land --merge`): killed before its first rename
the raw tables are byte for byte the previous ones; killed between renames they are an earlier
consistent state (every activity's and conversion's lead is in leads.csv); either way landing
the same increment again gives exactly what an uninterrupted merge gives."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from _kill import kill_at

from ml.contract import RAW_COLUMNS, raw_table_files
from ml.landing.merge import COMMIT_ORDER, merge_into_raw

TABLES = ("leads", "activities", "conversions")


def _frame(name: str, rows: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS[name]))


def _lead(i: int, day: int = 1, band: str = "<25k") -> list[str]:
    return [f"L{i:03d}", f"2026-10-{day:02d}T09:00:00Z", "Web", "Media", "5", "India", "Media",
            "1", band]


def _base(raw: Path) -> None:
    """Last night's raw tables, as a whole landing writes them."""
    raw.mkdir(parents=True)
    frames = {
        "leads": _frame("leads", [_lead(i) for i in range(1, 41)]),
        "activities": _frame("activities", [
            [f"A{i:04d}", f"L{1 + i % 40:03d}", "2026-10-10T10:00:00Z", "email_open"]
            for i in range(200)]),
        "conversions": _frame("conversions", [["L001", "2026-10-20T09:00:00Z", "9000"]]),
    }
    for name, frame in frames.items():
        frame.to_csv(raw / f"{name}.csv", index=False)


def _increment() -> dict[str, pd.DataFrame]:
    """Tonight's: new leads L041-L045 (with activities and a conversion), an edited lead, a late
    activity and a corrected one."""
    return {
        "leads": _frame("leads", [*(_lead(i, day=30) for i in range(41, 46)),
                                  _lead(2, band="100k+")]),
        "activities": _frame("activities", [
            *([f"B{i:04d}", f"L{41 + i % 5:03d}", "2026-10-31T10:00:00Z", "website_visit"]
              for i in range(30)),
            ["LATE", "L003", "2026-10-05T10:00:00Z", "meeting_booked"],
            ["A0007", "L008", "2026-10-10T10:00:00Z", "document_upload"],
        ]),
        "conversions": _frame("conversions", [["L041", "2026-10-31T12:00:00Z", "12000"]]),
    }


def _tables(raw: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for name in TABLES for p in raw_table_files(raw, name)}


def _consistent(raw: Path) -> None:
    leads = set(pd.read_csv(raw / "leads.csv", dtype=str)["lead_id"])
    for name in ("activities", "conversions"):
        for path in raw_table_files(raw, name):
            assert set(pd.read_csv(path, dtype=str)["lead_id"]) <= leads, path.name


@pytest.fixture(scope="module")
def merged_once(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    raw = tmp_path_factory.mktemp("uninterrupted") / "raw"
    _base(raw)
    merge_into_raw(_increment(), raw)
    return _tables(raw)


@pytest.mark.parametrize(("when", "nth"), [("before", 1), ("after", 1), ("after", 2),
                                           ("after", 3)])
def test_kill_9_in_a_merge_leaves_a_consistent_raw_zone(merged_once, tmp_path, when, nth) -> None:
    raw = tmp_path / "raw"
    _base(raw)
    previous = _tables(raw)
    # the renames are the merge's only os.replace calls, in COMMIT_ORDER
    kill_at(lambda: merge_into_raw(_increment(), raw), os, "replace", when, nth=nth)
    after_kill = _tables(raw)
    _consistent(raw)
    committed = nth if when == "after" else 0
    for name in COMMIT_ORDER[committed:]:  # not renamed yet: as before
        assert {k: v for k, v in after_kill.items() if k.startswith(name)} == {
            k: v for k, v in previous.items() if k.startswith(name)}, name
    if committed == 0:
        assert after_kill == previous
    merge_into_raw(_increment(), raw)  # the nightly job runs again
    assert _tables(raw) == merged_once
