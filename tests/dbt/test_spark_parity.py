"""Engine parity: the same raw files built by dbt-duckdb and by dbt-spark (local Spark, the
session method) give the same marts and the same quarantine, row for row.

Both builds read one raw folder, with bad rows of every kind planted, and are pinned to the same
as_of. Compared after ordering: every mart as published (Parquet), and every base_crm__* table
(typed values, the raw text of rejected rows, the rejection reason, each attribute issue), which
is what the stg_* and *_rejected views select from. Then the point-in-time training set that
Feast builds from each engine's marts (DuckDB offline store / Spark offline store). Marked
`spark`: it needs Java 17 and the `spark` extra (`make demo-spark` installs Java when absent); CI
runs it as its own step.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from _dbt_helpers import AS_OF, append_rows, read_csv_rows

from ml.config import Settings, load_settings
from ml.contract import RAW_COLUMNS
from ml.landing.merge import merge_into_raw
from ml.spark import spark_available
from ml.warehouse import MARTS, RAW_FILES, BuildSummary, _connect_read_only, build_warehouse

pytestmark = pytest.mark.spark


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def plant_bad_rows(raw: Path) -> None:
    """Rows of each rejection reason and of each attribute issue, and values only a lenient
    parser reads (a US date, thousands separators, odd case and spacing, a decimal count)."""
    leads = read_csv_rows(raw / "leads.csv")
    first = leads[0]
    created = datetime.fromisoformat(first["created_at"].replace("Z", ""))
    good = _iso(created + timedelta(days=1))
    tail = ["Web", "Trading", "10", "Egypt", "Commercial", "1", "<25k"]
    append_rows(
        raw / "leads.csv",
        [
            ["", good, *tail],
            ["LBAD0001", "yesterday", *tail],
            ["LBAD0002", "2027-01-01T00:00:00Z", *tail],
            ["LBAD0003", good, "Web", "Trading", "-5", "Egypt", "Commercial", "1", "<25k"],
            ["LBAD0004", good, "Carrier pigeon", *tail[1:]],
            ["LBAD0005", good, "Web", "Trading", "10", "Egypt", "Commercial", "many", "<25k"],
            ["LBAD0006", good, "Web", "Trading", "10", "Egypt", "Space", "1", "a lot"],
            ["LBAD0007", "2026", *tail],  # a year alone is not a timestamp
            ["LFIX0001", "05/06/2026 14:22", " web ", "Trading", "1,200", "Egypt", "COMMERCIAL",
             "3", "100K+"],
            ["LFIX0002", "2026-05-06T16:22:00+02:00", "Email  campaign", "Trading", "12.5",
             "Egypt", "service", "2", "25k-50k"],
            list(first.values()),
        ],
    )
    append_rows(
        raw / "activities.csv",
        [
            ["", first["lead_id"], good, "email_open"],
            ["ABAD0001", first["lead_id"], good, "telepathy"],
            ["ABAD0002", "LNOPE", good, "email_open"],
            ["ABAD0003", "LBAD0001", good, "email_open"],
            ["ABAD0004", first["lead_id"], "2026-12-01T00:00:00Z", "email_open"],
            ["ABAD0005", first["lead_id"], "2026-02-30T00:00:00Z", "email_open"],
            ["AKEEP001", "LBAD0004", good, "Email_Open"],
        ],
    )
    append_rows(
        raw / "conversions.csv",
        [
            ["LNOPE", good, "1000"],
            [first["lead_id"], _iso(created - timedelta(days=1)), "1000"],
            [leads[1]["lead_id"], good, "-1"],
            ["LBAD0003", good, "12,000.50"],
        ],
    )
    # a nightly increment's part file (ml/landing/merge.py): a correction of a landed activity
    # (the older row is superseded), a new one, and an id twice in the part (a duplicate)
    landed = read_csv_rows(raw / "activities.csv")[0]
    merge_into_raw({"activities": pd.DataFrame([
        [landed["activity_id"], landed["lead_id"], landed["occurred_at"], "document_upload"],
        ["APART001", first["lead_id"], good, "webinar"],
        ["APART001", first["lead_id"], _iso(created + timedelta(days=2)), "webinar"],
    ], columns=list(RAW_COLUMNS["activities"]))}, raw)
    odd = _iso(created + timedelta(days=1, seconds=17))
    append_rows(
        raw / "lead_attribute_changes.csv",
        [
            ["", odd, "budget_band", "<25k", "25k-50k"],
            [leads[2]["lead_id"], "last week", "budget_band", "<25k", "25k-50k"],
            [leads[4]["lead_id"], odd, "lead_status", "Open", "Qualified"],
            [leads[5]["lead_id"], odd, "company_size", "10", "-3"],
            [leads[6]["lead_id"], odd, "budget_band", "<25k", "a lot"],
            ["LNOPE", odd, "budget_band", "<25k", "25k-50k"],
            [leads[7]["lead_id"], odd, "company_size", "3", "4"],
            [leads[7]["lead_id"], odd, "company_size", "3", "4"],
            # a quoted field holding a line break: one record over two lines, on both engines
            [leads[8]["lead_id"], odd, "budget_band", "<25k", "25k-50k\n(per year)"],
        ],
    )
    plant_malformed_lines(raw)


# Lines no CSV reader splits into the contract's columns (a raw file edited by hand): too many
# fields, too few, and a quote left open, which runs to the end of its file (so it comes last).
MALFORMED_LINES = {
    "leads": ["LMAL0001,2026-05-01T00:00:00Z,Web,Trading,10,Egypt,Commercial,1,<25k,x,y"],
    "activities": ["AMAL0001,L0000001,2026-05-01T00:00:00Z", 'AMAL0002,"L0000001,x,y'],
    "conversions": ["LMAL0002,2026-05-01T00:00:00Z"],
    "lead_attribute_changes": ['LMAL0003,"2026-05-01T00:00:00Z,budget_band,<25k,25k-50k'],
}


def plant_malformed_lines(raw: Path) -> None:
    """Each file gets its malformed lines at the end, and so does an increment's part file."""
    for name, lines in MALFORMED_LINES.items():
        with (raw / f"{name}.csv").open("a", newline="") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
    (part,) = sorted(raw.glob("activities.part-*.csv"))
    with part.open("a", newline="") as fh:
        fh.write("AMAL0003\n")


@pytest.fixture(scope="module")
def builds(
    small_data: Callable[[str], Settings],
) -> tuple[tuple[Settings, BuildSummary], tuple[Settings, BuildSummary]]:
    """One raw folder with bad rows, built once by each engine (own warehouse and marts)."""
    if not spark_available():
        message = "Spark needs Java 17 and pyspark (the `spark` extra; make demo-spark)"
        import os

        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI runs the Spark parity tests: {message}")
        pytest.skip(message)
    duck = small_data("parity_duckdb")
    plant_bad_rows(duck.paths.raw_dir)
    spark_dir = duck.paths.data_dir.parent / "parity_spark"
    shutil.rmtree(spark_dir, ignore_errors=True)
    spark = load_settings(
        overrides={
            "engine": "spark",
            "spark.small_data": True,
            "paths.data_dir": str(spark_dir),
            "paths.raw_dir": str(duck.paths.raw_dir),
            "features.max_rejected_share": duck.features.max_rejected_share,
        }
    )
    return (
        (duck, build_warehouse(duck, as_of=AS_OF)),
        (spark, build_warehouse(spark, as_of=AS_OF)),
    )


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order whatever the engine wrote: sorted by every column's text."""
    frame = frame[sorted(frame.columns)]
    keys = frame.astype(str)
    return frame.iloc[keys.sort_values(list(keys.columns)).index].reset_index(drop=True)


def _assert_same(duck: pd.DataFrame, spark: pd.DataFrame, what: str) -> None:
    assert sorted(duck.columns) == sorted(spark.columns), f"{what}: columns differ"
    assert len(duck) == len(spark), f"{what}: {len(duck)} rows on DuckDB, {len(spark)} on Spark"
    assert len(duck) > 0, f"{what}: empty, nothing compared"
    pd.testing.assert_frame_equal(
        _ordered(duck), _ordered(spark), check_dtype=False, rtol=1e-9, obj=what
    )


@pytest.mark.parametrize("mart", MARTS)
def test_marts_are_identical(builds, mart: str) -> None:
    (_, duck), (_, spark) = builds
    _assert_same(pd.read_parquet(duck.marts[mart]), pd.read_parquet(spark.marts[mart]), mart)


@pytest.mark.parametrize("name", RAW_FILES)
def test_quarantine_is_identical(builds, name: str) -> None:
    """Every raw row, accepted or rejected, with its typed values, raw text and reason."""
    (duck_settings, duck), (spark_settings, spark) = builds
    frames = []
    for settings in (duck_settings, spark_settings):
        con = _connect_read_only(settings)
        try:
            frames.append(con.sql(f"select * from base_crm__{name}").df())
        finally:
            con.close()
    _assert_same(*frames, f"base_crm__{name}")
    assert frames[0]["rejection_reason"].notna().any(), f"{name}: no planted row rejected"
    # each malformed line is one row with its text, on both engines alike (compared above)
    malformed = frames[0].loc[frames[0]["rejection_reason"] == "malformed_line", "line_raw"]
    planted = MALFORMED_LINES[name] + (["AMAL0003"] if name == "activities" else [])
    assert sorted(malformed) == sorted(planted), name
    if name == "activities":  # the part file's rows were read and ranked after the base file's
        reasons = set(frames[0]["rejection_reason"].dropna())
        assert {"superseded", "duplicate_id"} <= reasons
    assert duck.rejected_rows == spark.rejected_rows
    assert duck.as_of == spark.as_of


def test_spark_reads_by_line_the_files_without_multi_line_records(builds) -> None:
    """Spark splits a raw file at line breaks only where that cannot change its rows
    (macro raw_files_by_reading): the comparisons above cover both readings, malformed lines in
    each. leads.csv and conversions.csv (a quoted comma, too many or too few fields) are read by
    line; activities.csv (a quote left open) as multi-line records, its part file (too few
    fields) by line; lead_attribute_changes.csv (a quoted line break) as records."""
    (_, _), (spark_settings, _) = builds
    log = (Path(spark_settings.paths.warehouse).parent / "dbt_logs" / "dbt.log").read_text()
    for name, by_line, records in [("leads", 1, 0), ("conversions", 1, 0), ("activities", 1, 1),
                                   ("lead_attribute_changes", 0, 1)]:
        expected = f"raw {name}: {by_line} file(s) read by line, {records} as multi-line records"
        assert expected in log, expected


def test_point_in_time_training_sets_are_identical(builds) -> None:
    """Feast's Spark offline store over the Spark-built marts joins the same features to the
    same labelled rows as its DuckDB offline store over the DuckDB-built marts."""
    from ml.feature_store import apply_feature_repo
    from ml.training_set import TIMESTAMP, build_training_set

    (duck_settings, _), (spark_settings, _) = builds
    frames = []
    for settings in (duck_settings, spark_settings):
        apply_feature_repo(settings)
        frame = build_training_set(settings, with_truth=False)
        assert str(frame[TIMESTAMP].dt.tz) == "UTC", f"{settings.engine}: timestamps not UTC"
        frames.append(frame.sort_values([TIMESTAMP, "lead_id"]).reset_index(drop=True))
    duck, spark = frames
    assert len(duck) > 0 and duck.drop(columns=["lead_id", TIMESTAMP]).notna().any().all()
    pd.testing.assert_frame_equal(duck, spark[duck.columns], check_dtype=False, rtol=1e-9)
