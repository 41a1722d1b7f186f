"""Nightly increments: an export of only what changed merges into the raw files (upsert by id,
late-arriving activities kept), equals landing the whole export at once, and re-landing the same
increment changes nothing. Activities are appended as a part file (activities.csv is not
rewritten); leads and conversions are rewritten with the increment upserted."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from ml.contract import RAW_COLUMNS, raw_part_files, raw_table_files
from ml.data.landing import validate_landing_zone
from ml.errors import DataError
from ml.landing import land_export, make_sample_export
from ml.landing.merge import merge_into_raw

LANDED = datetime(2026, 11, 1, 6, tzinfo=UTC)
CUTOFF = "2026-10-01"
FILES = ("leads", "activities", "conversions")


def _write(frames: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, frame in frames.items():
        # latin-1 both ways keeps every byte of the sample's mixed encodings
        frame.to_csv(folder / name, index=False, encoding="latin-1")
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Salesforce export cut into last night's full export and tonight's increment: leads
    created since the cut-off, three older leads edited (one converted), activities since the
    cut-off and one activity from September that reached the CRM late."""
    root = tmp_path_factory.mktemp("increments")
    sample = make_sample_export("salesforce", root / "whole", n_leads=300, days=120,
                                end_date=date(2026, 11, 1), seed=5)
    files = {
        p.name: pd.read_csv(p, dtype=str, keep_default_na=False, encoding="latin-1")
        for p in sample.files
    }
    for frame in files.values():  # a UTF-8 byte-order mark, read as latin-1, leads the header
        frame.columns = [frame.columns[0].removeprefix("ï»¿"), *frame.columns[1:]]
    lead, task = files["Lead.csv"], files["Task.csv"]
    new_lead = lead["CreatedDate"] >= CUTOFF
    old = lead[~new_lead & (lead["IsConverted"] == "false")]
    edited = old[~old["Id"].duplicated(keep=False)].head(3).copy()
    edited["Budget_Band__c"] = "100k+"
    edited.iloc[0, edited.columns.get_loc("IsConverted")] = "true"
    edited.iloc[0, edited.columns.get_loc("ConvertedDate")] = "2026-10-20"
    edited.iloc[0, edited.columns.get_loc("Package_Value__c")] = "12000"
    late = task[(task["CreatedDate"] < CUTOFF) & (task["Type"] == "Email Opened")
                & task["WhoId"].isin(lead.loc[~new_lead, "Id"])].tail(1)
    base = {
        "Lead.csv": lead[~new_lead],
        "Task.csv": task[(task["CreatedDate"] < CUTOFF)].drop(late.index),
        "Event.csv": files["Event.csv"][files["Event.csv"]["CreatedDate"] < CUTOFF],
    }
    increment = {
        "Lead.csv": pd.concat([lead[new_lead], edited]),
        "Task.csv": pd.concat([task[task["CreatedDate"] >= CUTOFF], late]),
        "Event.csv": files["Event.csv"][files["Event.csv"]["CreatedDate"] >= CUTOFF],
    }
    edited_ids = set(edited["Id"])
    whole = {
        "Lead.csv": pd.concat([lead[~lead["Id"].isin(edited_ids)], edited]),
        "Task.csv": task,
        "Event.csv": files["Event.csv"],
    }
    return {"base": _write(base, root / "base"), "increment": _write(increment, root / "inc"),
            "whole": _write(whole, root / "whole_now"),
            "late_id": late["Id"].iloc[0], "converted": edited["Id"].iloc[0]}


def _land(export: Path, raw: Path, merge: bool = False) -> dict:
    return land_export("salesforce", export, raw, landed_at=LANDED, merge=merge).merged


def _rows(raw: Path, name: str) -> list[tuple]:
    """The rows of raw table `name`: its file and its part files."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in raw_table_files(raw, name)]
    return sorted(map(tuple, pd.concat(frames).to_numpy().tolist()))


def _raw_bytes(raw: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(raw.glob("*.csv"))}


def test_merged_increment_equals_landing_the_whole_export(exports, tmp_path: Path) -> None:
    merged, whole = tmp_path / "merged", tmp_path / "whole"
    _land(exports["base"], merged)
    counts = _land(exports["increment"], merged, merge=True)
    _land(exports["whole"], whole)
    for name in FILES:
        assert _rows(merged, name) == _rows(whole, name), name
    assert counts["leads"]["updated"] == 3 and counts["leads"]["added"] > 0
    assert counts["conversions"]["added"] >= 1
    (part,) = raw_part_files(merged, "activities")
    assert counts["activities"]["part"] == part.name and part.name.startswith("activities.part-")
    tonight = pd.read_csv(part, dtype=str)
    assert counts["activities"]["added"] == len(tonight)
    assert exports["late_id"] in set(tonight["activity_id"])  # the late activity is kept
    leads = pd.read_csv(merged / "leads.csv", dtype=str)
    assert leads["lead_id"].is_unique


def test_activities_are_appended_not_rewritten(exports, tmp_path: Path) -> None:
    """The merge's cost follows the increment: activities.csv keeps its bytes and its inode
    (never rewritten), each night adds one part file, numbered after the last."""
    raw = tmp_path / "raw"
    _land(exports["base"], raw)
    base = raw / "activities.csv"
    inode, content = base.stat().st_ino, base.read_bytes()
    _land(exports["increment"], raw, merge=True)
    counts = land_export("salesforce", exports["whole"], raw, landed_at=LANDED, merge=True).merged
    assert base.stat().st_ino == inode and base.read_bytes() == content
    parts = [p.name for p in raw_part_files(raw, "activities")]
    assert [p.split("-")[1] for p in parts] == ["000001", "000002"]
    assert counts["activities"]["part"] == parts[1]
    # a whole export landed without --merge replaces the table: the parts go
    _land(exports["base"], raw)
    assert raw_part_files(raw, "activities") == []


def test_relanding_an_increment_is_idempotent(exports, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _land(exports["base"], raw)
    _land(exports["increment"], raw, merge=True)
    first = _raw_bytes(raw)
    again = _land(exports["increment"], raw, merge=True)
    assert _raw_bytes(raw) == first
    assert all(again[n]["before"] == again[n]["after"] for n in ("leads", "conversions"))
    assert again["leads"]["added"] == 0 and again["activities"]["added"] == 0
    assert again["activities"]["part"] == raw_part_files(raw, "activities")[0].name


def test_rows_without_an_id_are_kept_once(tmp_path: Path) -> None:
    leads = pd.DataFrame({"lead_id": ["L1", "", "L2"], "created_at": ["2026-01-01T00:00:00Z",
                          "2026-01-02T00:00:00Z", "x"]}).reindex(
        columns=["lead_id", "created_at", "lead_source", "industry", "company_size", "country",
                 "license_type", "visa_quota", "budget_band"])
    for _ in range(2):
        counts = merge_into_raw({"leads": leads}, tmp_path)
    assert counts["leads"].after == 3
    update = leads.iloc[[2]].assign(created_at="2026-01-03T00:00:00Z")
    merge_into_raw({"leads": update}, tmp_path)
    merged = pd.read_csv(tmp_path / "leads.csv", dtype=str, keep_default_na=False)
    assert merged.set_index("lead_id").loc["L2", "created_at"] == "2026-01-03T00:00:00Z"
    assert len(merged) == 3


def test_a_raw_file_of_another_shape_is_not_merged_into(tmp_path: Path) -> None:
    (tmp_path / "activities.csv").write_text("id,lead,when\n1,L1,2026-01-01\n")
    frame = pd.DataFrame(columns=["activity_id", "lead_id", "occurred_at", "activity_type"])
    with pytest.raises(DataError, match="activities.csv: cannot merge"):
        merge_into_raw({"activities": frame}, tmp_path)
    assert (tmp_path / "activities.csv").read_text().startswith("id,lead,when")


def test_the_landing_zone_check_counts_part_files(tmp_path: Path) -> None:
    """validate_landing_zone (the Dagster raw asset's figures) counts a table's part files; a
    part file of another shape is refused, naming it."""
    columns = {n: list(c) for n, c in RAW_COLUMNS.items()}
    lead = ["L1", "2026-01-01T00:00:00Z", "Web", "Media", "5", "India", "Media", "1", "<25k"]
    merge_into_raw({"leads": pd.DataFrame([lead], columns=columns["leads"]),
                    "conversions": pd.DataFrame([["L1", "2026-01-03T00:00:00Z", "1"]],
                                                columns=columns["conversions"]),
                    "activities": pd.DataFrame([["A1", "L1", "2026-01-02T00:00:00Z", "webinar"]],
                                               columns=columns["activities"])}, tmp_path)
    pd.DataFrame([["A0", "L1", "2026-01-01T00:00:00Z", "webinar"]] * 2,
                 columns=columns["activities"]).to_csv(tmp_path / "activities.csv", index=False)
    activities = validate_landing_zone(tmp_path).files["activities"]
    assert (activities.rows, activities.parts) == (3, 1)
    (part,) = raw_part_files(tmp_path, "activities")
    part.write_text("id,lead\nA1,L1\n")
    with pytest.raises(DataError, match=part.name):
        validate_landing_zone(tmp_path)
