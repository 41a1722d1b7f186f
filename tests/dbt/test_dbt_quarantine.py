"""Malformed raw rows are quarantined in the *_rejected models with the right reason; a lead with
a bad attribute is kept (the value nulled and listed in stg_crm__lead_attribute_issues)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from _dbt_helpers import AS_OF, append_rows, read_csv_header, read_csv_rows

from ml.config import Settings
from ml.errors import DataError
from ml.warehouse import RAW_FILES, BuildSummary, build_warehouse

LEAD_TAIL = ["Web", "Trading", "10", "Egypt", "Commercial", "1", "<25k"]


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def dirty(small_data: Callable[[str], Settings]) -> tuple[Settings, BuildSummary, dict]:
    """Small data with bad rows appended to each file, built once with an explicit as_of."""
    settings = small_data("dirty")
    raw = settings.paths.raw_dir
    leads = read_csv_rows(raw / "leads.csv")
    first = leads[0]
    created = datetime.fromisoformat(first["created_at"].replace("Z", ""))
    good_ts = _iso(created + timedelta(days=1))
    # key -> expected rejection reason, per file: only a lead without a usable id or creation time
    expected = {
        "leads": {
            "": "null_id",
            "LBAD0001": "unparseable_timestamp",
            "LBAD0002": "future_timestamp",
            first["lead_id"]: "duplicate_id",
        },
        "activities": {
            "": "null_id",
            "ABAD0001": "unknown_activity_type",
            "ABAD0002": "unknown_lead",
            "ABAD0003": "unknown_lead",  # of a rejected lead
            "ABAD0004": "future_timestamp",
            "ABAD0005": "unparseable_timestamp",
        },
        "conversions": {
            "LNOPE": "unknown_lead",
            "LBAD0001": "unknown_lead",
            first["lead_id"]: "conversion_before_creation",
            leads[1]["lead_id"]: "invalid_package_value",
        },
        "lead_attribute_changes": {
            "": "null_id",
            leads[2]["lead_id"]: "unparseable_timestamp",
            leads[3]["lead_id"]: "future_timestamp",
            leads[4]["lead_id"]: "unknown_field",
            leads[5]["lead_id"]: "invalid_company_size",
            leads[6]["lead_id"]: "unknown_budget_band",
            "LNOPE": "unknown_lead",
            first["lead_id"]: "change_before_creation",
            leads[7]["lead_id"]: "duplicate_change",
        },
    }
    append_rows(
        raw / "leads.csv",
        [
            ["", good_ts, *LEAD_TAIL],
            ["LBAD0001", "yesterday", *LEAD_TAIL],
            ["LBAD0002", "2027-01-01T00:00:00Z", *LEAD_TAIL],
            ["LBAD0003", good_ts, "Web", "Trading", "-5", "Egypt", "Commercial", "1", "<25k"],
            ["LBAD0004", good_ts, "Carrier pigeon", *LEAD_TAIL[1:]],
            ["LBAD0005", good_ts, "Web", "Trading", "10", "Egypt", "Commercial", "many", "<25k"],
            ["LBAD0006", good_ts, "Web", "Trading", "10", "Egypt", "Space", "1", "a lot"],
            # what a spreadsheet makes of a lead: folded in staging, nothing lost
            [
                "LFIX0001",
                "05/06/2026 14:22",
                " web ",
                "Trading",
                "1,200",
                "Egypt",
                "COMMERCIAL",
                "3",
                "100K+",
            ],
            list(first.values()),  # an exact duplicate: one copy is kept, the other rejected
        ],
    )
    append_rows(
        raw / "activities.csv",
        [
            ["", first["lead_id"], good_ts, "email_open"],
            ["ABAD0001", first["lead_id"], good_ts, "telepathy"],
            ["ABAD0002", "LNOPE", good_ts, "email_open"],
            ["ABAD0003", "LBAD0001", good_ts, "email_open"],
            ["ABAD0004", first["lead_id"], "2026-12-01T00:00:00Z", "email_open"],
            ["ABAD0005", first["lead_id"], "2026-02-30T00:00:00Z", "email_open"],
            ["AKEEP001", "LBAD0004", good_ts, "Email_Open"],  # of a lead with a bad attribute
        ],
    )
    append_rows(
        raw / "conversions.csv",
        [
            ["LNOPE", good_ts, "1000"],
            ["LBAD0001", good_ts, "1000"],
            [first["lead_id"], _iso(created - timedelta(days=1)), "1000"],
            [leads[1]["lead_id"], good_ts, "-1"],
            ["LBAD0003", good_ts, "12,000.50"],  # kept: its lead is kept
        ],
    )

    def odd_ts(lead: dict[str, str]) -> str:
        # a day after the lead's creation, at a second no generated change falls on
        at = datetime.fromisoformat(lead["created_at"].replace("Z", ""))
        return _iso(at + timedelta(days=1, seconds=17))

    append_rows(
        raw / "lead_attribute_changes.csv",
        [
            ["", odd_ts(first), "budget_band", "<25k", "25k-50k"],
            [leads[2]["lead_id"], "last week", "budget_band", "<25k", "25k-50k"],
            [leads[3]["lead_id"], "2027-01-01T00:00:00Z", "budget_band", "<25k", "25k-50k"],
            [leads[4]["lead_id"], odd_ts(leads[4]), "lead_status", "Open", "Qualified"],
            [leads[5]["lead_id"], odd_ts(leads[5]), "company_size", "10", "-3"],
            [leads[6]["lead_id"], odd_ts(leads[6]), "budget_band", "<25k", "a lot"],
            ["LNOPE", odd_ts(first), "budget_band", "<25k", "25k-50k"],
            [first["lead_id"], _iso(created - timedelta(days=1)), "budget_band", "<25k", "100k+"],
            # the same change twice: one copy is kept, the other rejected
            [leads[7]["lead_id"], odd_ts(leads[7]), "company_size", "3", "4"],
            [leads[7]["lead_id"], odd_ts(leads[7]), "company_size", "3", "4"],
        ],
    )
    # lines no CSV reader splits into the contract's columns, dropped into the raw folder by hand
    # (`lead-scoring land` refuses them): each is one malformed_line row, the file's other rows
    # are still read
    for name, line in MALFORMED_LINES.items():
        with (raw / f"{name}.csv").open("a", newline="") as fh:
            fh.write(line + "\n")
    _write_part_file(raw, "activities", [f"APART001,{first['lead_id']},{good_ts},webinar"])
    summary = build_warehouse(settings, as_of=AS_OF)
    return settings, summary, expected


# a line too long, a line too short and, last in its file, a quote left open (it runs to the end
# of the file, as the CSV rules say, so it must be the file's last line to cost only itself)
MALFORMED_LINES = {
    "leads": "LMAL0001,2026-05-01T00:00:00Z,Web,Trading,10,Egypt,Commercial,1,<25k,oops,again",
    "activities": "AMAL0001,L0000001,2026-05-01T00:00:00Z",
    "conversions": 'LMAL0002,"2026-05-01T00:00:00Z,1000',
    "lead_attribute_changes": "LMAL0003,2026-05-01T00:00:00Z,budget_band,<25k,25k-50k,100k+",
}
# a nightly increment's part file edited by hand: one good row, one line short of a field
PART_MALFORMED = "AMAL0002,L0000001"


def _write_part_file(raw: Path, name: str, good_lines: list[str]) -> None:
    header = ",".join(read_csv_header(raw / f"{name}.csv"))
    lines = [header, *good_lines, PART_MALFORMED]
    (raw / f"{name}.part-000001-handmade.csv").write_text("\n".join(lines) + "\n")


def _rejected(settings: Settings, name: str) -> list[tuple[str, str]]:
    key = "activity_id" if name == "activities" else "lead_id"
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    try:
        return con.sql(
            f"select coalesce({key}, ''), rejection_reason from stg_crm__{name}_rejected"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("name", RAW_FILES)
def test_bad_rows_land_in_rejected_with_their_reason(dirty, name: str) -> None:
    settings, _, expected = dirty
    rejected = _rejected(settings, name)
    for key, reason in expected[name].items():
        assert (key, reason) in rejected, f"{name}: {key!r} not rejected as {reason}"
    # nothing but the planted rows is rejected from clean generated data
    assert len(rejected) == len(expected[name]) + len(MALFORMED[name])


# the malformed lines of each file, as the *_rejected view shows them (raw_line)
MALFORMED = {
    name: [line] + ([PART_MALFORMED] if name == "activities" else [])
    for name, line in MALFORMED_LINES.items()
}


def test_rows_still_add_up_with_bad_rows(dirty) -> None:
    _, summary, expected = dirty
    for name in RAW_FILES:
        assert summary.rejected_rows[name] == len(expected[name]) + len(MALFORMED[name])
        assert summary.accepted_rows[name] + summary.rejected_rows[name] == summary.raw_rows[name]


def test_malformed_lines_are_quarantined_with_their_text(dirty) -> None:
    """A line of too many or too few fields, or with a quote left open, is one rejected row
    (malformed_line) whose raw_line is the line as it was in the file; its columns are null."""
    settings, _, _ = dirty
    for name in RAW_FILES:
        rows = _query(
            settings,
            f"select * exclude (rejection_reason, raw_line), raw_line from stg_crm__{name}_rejected"
            " where rejection_reason = 'malformed_line' order by raw_line",
        )
        assert [row[-1] for row in rows] == sorted(MALFORMED[name]), name
        assert all(value is None for row in rows for value in row[:-1]), name
        # the other lines' rows (rejected for another reason) have no raw_line
        assert _query(
            settings,
            f"select count(*) from stg_crm__{name}_rejected"
            " where rejection_reason != 'malformed_line' and raw_line is not null",
        ) == [(0,)]


def test_good_rows_of_a_file_with_a_malformed_line_are_accepted(dirty) -> None:
    """Every line of a raw table is a row (the rows_add_up test of dbt checks that too), and the
    good row of the hand-edited part file is accepted beside its malformed neighbour."""
    settings, summary, _ = dirty
    raw = settings.paths.raw_dir
    # data lines of every file of the table, counted by the csv module (the open quote of
    # conversions.csv runs to the end of its file: one record)
    for name in RAW_FILES:
        records = 0
        for path in sorted(raw.glob(f"{name}.*csv")):
            with path.open(newline="") as fh:
                records += sum(1 for _ in csv.reader(fh)) - 1
        assert summary.raw_rows[name] == records, name
    assert _query(
        settings, "select activity_type from stg_crm__activities where activity_id = 'APART001'"
    ) == [("webinar",)]


def test_duplicate_keeps_exactly_one_copy(dirty) -> None:
    settings, _, expected = dirty
    (dup_id,) = [k for k, r in expected["leads"].items() if r == "duplicate_id"]
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    try:
        n = con.sql(f"select count(*) from stg_crm__leads where lead_id = '{dup_id}'").fetchall()
    finally:
        con.close()
    assert n[0][0] == 1


def test_rejected_leads_have_no_features(dirty) -> None:
    import pandas as pd

    _, summary, expected = dirty
    features = pd.read_parquet(summary.marts["lead_features"], columns=["lead_id"])
    rejected = {k for k, r in expected["leads"].items() if r != "duplicate_id"}
    assert not features["lead_id"].isin(rejected).any()
    assert pd.Timestamp(summary.as_of) == pd.Timestamp(AS_OF)


def _query(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_bad_attribute_keeps_the_lead_and_nulls_the_value(dirty) -> None:
    settings, _, _ = dirty
    kept = dict(
        (row[0], row[1:])
        for row in _query(
            settings,
            "select lead_id, lead_source, company_size, visa_quota, license_type, budget_band "
            "from stg_crm__leads where lead_id like 'LBAD%'",
        )
    )
    assert kept == {
        "LBAD0003": ("Web", None, 1, "Commercial", "<25k"),
        "LBAD0004": (None, 10, 1, "Commercial", "<25k"),
        "LBAD0005": ("Web", 10, None, "Commercial", "<25k"),
        "LBAD0006": ("Web", 10, 1, None, None),
    }
    issues = set(
        _query(
            settings,
            "select lead_id, column_name, raw_value, reason from stg_crm__lead_attribute_issues",
        )
    )
    assert issues == {
        ("LBAD0003", "company_size", "-5", "invalid_company_size"),
        ("LBAD0004", "lead_source", "Carrier pigeon", "unknown_lead_source"),
        ("LBAD0005", "visa_quota", "many", "invalid_visa_quota"),
        ("LBAD0006", "license_type", "Space", "unknown_license_type"),
        ("LBAD0006", "budget_band", "a lot", "unknown_budget_band"),
    }
    # their activities and conversions are kept too
    assert _query(
        settings,
        "select lead_id, activity_type from stg_crm__activities where activity_id = 'AKEEP001'",
    ) == [("LBAD0004", "email_open")]
    assert _query(
        settings, "select package_value from stg_crm__conversions where lead_id = 'LBAD0003'"
    ) == [(Decimal("12000.50"),)]


def test_spreadsheet_spellings_are_folded_not_rejected(dirty) -> None:
    settings, _, _ = dirty
    assert _query(
        settings,
        "select created_at, lead_source, company_size, license_type, budget_band "
        "from stg_crm__leads where lead_id = 'LFIX0001'",
    ) == [(datetime(2026, 5, 6, 14, 22), "Web", 1200, "Commercial", "100k+")]
    assert _query(
        settings, "select count(*) from stg_crm__lead_attribute_issues where lead_id = 'LFIX0001'"
    ) == [(0,)]


def test_a_file_without_the_contract_header_fails_naming_it(dirty) -> None:
    """Columns in another order would be read into the wrong columns: the build stops first,
    naming the file, and the previous build's tables stay. (Reuses the module's data folder,
    so dbt parses partially; the file is removed after.)"""
    settings, summary, _ = dirty
    path = settings.paths.raw_dir / "conversions.part-999999-reordered.csv"
    path.write_text("converted_at,lead_id,package_value\n2026-05-01T00:00:00Z,LNOPE,1000\n")
    try:
        with pytest.raises(DataError, match=r"conversions\.part-999999-reordered\.csv: the first "):
            build_warehouse(settings, as_of=AS_OF)
    finally:
        path.unlink()
    assert _query(settings, "select count(*) from base_crm__conversions") == [
        (summary.raw_rows["conversions"],)
    ]
