"""Landing a CRM export: mapping validation, robust reading, value folding, atomic writes, the
CLI's error path and the Dagster raw asset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ml.contract import RAW_COLUMNS
from ml.errors import ConfigError, DataError
from ml.landing import available_mappings, land_export, load_mapping, make_sample_export
from ml.landing.fold import fold_column
from ml.landing.mapping import MAPPINGS_DIR, ColumnMap, TimestampRules, load_synonyms
from ml.landing.read import read_csv_text

SHIPPED = ("salesforce", "hubspot", "dynamics")


# --- mappings ----------------------------------------------------------------------------------


def test_the_three_vendor_mappings_ship_and_validate() -> None:
    assert set(SHIPPED) <= set(available_mappings())
    for name in SHIPPED:
        mapping = load_mapping(name)
        assert set(mapping.leads.columns) == set(RAW_COLUMNS["leads"])
        assert mapping.activities


def _write_mapping(tmp_path: Path, edit) -> Path:
    tree = yaml.safe_load((MAPPINGS_DIR / "salesforce.yaml").read_text(encoding="utf-8"))
    edit(tree)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda t: t["leads"]["columns"].pop("created_at"), "leads.columns: contract column"),
        (
            lambda t: t["leads"]["columns"]["lead_source"].update(colour="red"),
            "leads.columns.lead_source.colour: unknown key",
        ),
        (lambda t: t["leads"].update(export="opportunity"), "leads.export: 'opportunity'"),
        (
            lambda t: t["leads"]["columns"]["lead_source"]["values"].update({"Fax": "Fax"}),
            "columns.lead_source.values: Fax not in the contract's lead_source",
        ),
        (lambda t: t["timestamps"].update(timezone="Mars/Olympus"), "timestamps.timezone"),
        (
            lambda t: t["leads"]["columns"]["lead_id"].update(optional=True),
            "leads.columns.lead_id: a key column cannot be optional",
        ),
    ],
)
def test_a_bad_mapping_is_an_error_naming_the_key(tmp_path: Path, edit, named: str) -> None:
    path = _write_mapping(tmp_path, edit)
    with pytest.raises(ConfigError, match="broken.yaml") as err:
        load_mapping(path)
    assert named in str(err.value)


def test_an_unknown_mapping_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="shipped: .*salesforce"):
        load_mapping("pipedrive")


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "newline", "expected"),
    [
        ("utf-8", "\n", "utf-8"),
        ("utf-8-sig", "\r\n", "utf-8 with BOM"),
        ("cp1252", "\r\n", "cp1252"),
    ],
)
def test_reader_detects_encoding_and_keeps_quoted_fields(
    tmp_path: Path, encoding: str, newline: str, expected: str
) -> None:
    text = newline.join(
        [
            "Id,Company,Subject",
            '00Q1,Société Générale,"Re: licence, ""visa""',
            'follow-up"',
            "",
            "00Q2,Café Müller,plain",
            ",,",
        ]
    )
    path = tmp_path / "Lead.csv"
    path.write_bytes(text.encode(encoding))
    frame, found, blank = read_csv_text(path)
    assert found == expected
    assert list(frame.columns) == ["Id", "Company", "Subject"]  # no BOM left on the first name
    assert frame["Company"].tolist() == ["Société Générale", "Café Müller"]
    assert frame["Subject"][0].replace("\r\n", "\n") == 'Re: licence, "visa"\nfollow-up'
    assert blank == 2


# --- folding -----------------------------------------------------------------------------------

RULES = TimestampRules(
    formats=["epoch_ms", "iso", "%m/%d/%Y %H:%M", "%Y-%m-%d"], timezone="Asia/Dubai"
)


def _fold(column: str, kind: str, cells: list[str], **spec) -> tuple[list[str], list[str]]:
    from ml.landing.mapping import VOCABULARIES

    folded = fold_column(
        pd.Series(cells, dtype=object),
        kind,
        ColumnMap(column=["x"], **spec),
        VOCABULARIES.get(column),
        load_synonyms(),
        RULES,
    )
    return folded.values.tolist(), folded.outcome.tolist()


def test_enum_values_are_folded_mapped_or_rejected() -> None:
    values, outcomes = _fold(
        "lead_source",
        "enum",
        ["Web", " web ", "Website", "Web form", "ORGANIC_SEARCH", "Carrier pigeon", "", "OFFLINE"],
        synonyms=["lead_sources"],
        values={"ORGANIC_SEARCH": "Web", "OFFLINE": None},
    )
    assert values == ["Web", "Web", "Web", "Web", "Web", "Carrier pigeon", "", ""]
    assert outcomes == ["ok", "folded", "mapped", "mapped", "mapped", "rejected", "null", "null"]


def test_numbers_with_thousands_separators_and_codes() -> None:
    values, outcomes = _fold(
        "company_size",
        "integer",
        ["12", "1,200", "1200.0", "lots", "-3", "5-25"],
        values={"5-25": 15},
    )
    assert values == ["12", "1200", "1200", "lots", "-3", "15"]
    assert outcomes == ["ok", "folded", "folded", "rejected", "rejected", "mapped"]
    values, outcomes = _fold(
        "package_value", "decimal", ["5778.70", "AED 12,000.50", "$1,200", "n/a"]
    )
    assert values == ["5778.70", "12000.50", "1200", "n/a"]
    assert outcomes == ["ok", "folded", "folded", "rejected"]


def test_timestamps_in_any_listed_format_and_zone_become_utc() -> None:
    values, outcomes = _fold(
        "created_at",
        "timestamp",
        [
            "2026-06-04T08:05:50Z",
            "2026-06-04T12:05:50+04:00",
            "2026-06-04T12:05:50",  # naive: the mapping's zone (Dubai, UTC+4)
            "1780560350000",  # epoch ms
            "06/04/2026 12:05",
            "yesterday",
            "",
        ],
    )
    assert values == [
        "2026-06-04T08:05:50Z",
        "2026-06-04T08:05:50Z",
        "2026-06-04T08:05:50Z",
        "2026-06-04T08:05:50Z",
        "2026-06-04T08:05:00Z",
        "yesterday",
        "",
    ]
    assert outcomes == ["ok", "mapped", "mapped", "mapped", "mapped", "rejected", "null"]


# --- landing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ml.data.generator import generate

    root = tmp_path_factory.mktemp("generated")
    generate(root / "raw", root / "truth", n_leads=300, days=120, seed=3)
    return root / "raw"


@pytest.mark.parametrize("vendor", ["salesforce", "dynamics"])
def test_a_clean_export_lands_as_the_generator_wrote_it(
    tmp_path: Path, generated: Path, vendor: str
) -> None:
    """Mapping and sample shape are inverses: a fault-free export lands the generator's files
    (ids translated; Salesforce's date-only ConvertedDate loses the time)."""
    sample = make_sample_export(vendor, tmp_path / "export", raw_dir=generated, faults=False)
    report = land_export(vendor, sample.export_dir, tmp_path / "raw")
    back = {v: k for k, v in sample.lead_ids.items()}
    for name in ("leads", "activities", "conversions"):
        landed = pd.read_csv(tmp_path / "raw" / f"{name}.csv", dtype=str, keep_default_na=False)
        original = pd.read_csv(generated / f"{name}.csv", dtype=str, keep_default_na=False)
        landed["lead_id"] = landed["lead_id"].map(back)
        assert report.files[name].rows_out == len(original)
        assert not any(c.counts["rejected"] for c in report.files[name].columns.values())
        if name == "activities":
            landed = landed.drop(columns="activity_id")
            original = original.drop(columns="activity_id")
        if name == "conversions" and vendor == "salesforce":
            landed, original = (
                landed.drop(columns="converted_at"),
                original.drop(columns="converted_at"),
            )
        key = list(landed.columns)
        pd.testing.assert_frame_equal(
            landed.sort_values(key, ignore_index=True), original.sort_values(key, ignore_index=True)
        )


def test_a_missing_required_column_names_the_file_and_the_column(
    tmp_path: Path, generated: Path
) -> None:
    sample = make_sample_export("salesforce", tmp_path / "export", raw_dir=generated, faults=False)
    lead_file = sample.export_dir / "Lead.csv"
    frame = pd.read_csv(lead_file, dtype=str, keep_default_na=False, encoding="cp1252")
    frame.drop(columns="CreatedDate").to_csv(lead_file, index=False)
    with pytest.raises(DataError, match=r"Lead\.csv: missing column CreatedDate or Create Date"):
        land_export("salesforce", sample.export_dir, tmp_path / "raw")

    from ml.cli import app

    result = CliRunner().invoke(
        app,
        ["land", "--mapping", "salesforce", str(sample.export_dir)],
        env={"LEAD_SCORING_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 2
    assert "Lead.csv: missing column CreatedDate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data" / "raw" / "leads.csv").exists()


def test_a_failed_landing_leaves_the_previous_files(
    tmp_path: Path, generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = make_sample_export("dynamics", tmp_path / "export", raw_dir=generated, faults=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in RAW_COLUMNS:
        (raw / f"{name}.csv").write_text(f"previous {name}\n")
    calls = {"n": 0}
    original = pd.DataFrame.to_csv

    def failing_to_csv(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third file: the first two are written, none renamed yet
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    with pytest.raises(OSError, match="disk full"):
        land_export("dynamics", sample.export_dir, raw)
    for name in RAW_COLUMNS:
        assert (raw / f"{name}.csv").read_text() == f"previous {name}\n"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.csv" for n in RAW_COLUMNS)


def test_the_report_is_written_as_json_and_html(tmp_path: Path, generated: Path) -> None:
    sample = make_sample_export("hubspot", tmp_path / "export", raw_dir=generated)
    report = land_export("hubspot", sample.export_dir, tmp_path / "raw", tmp_path / "reports")
    folder = Path(report.report_dir)
    assert folder.parent == tmp_path / "reports" / "landing"
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert saved["files"]["leads"]["rows_out"] == report.files["leads"].rows_out
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "Landing report: HubSpot export" in page and "Carrier pigeon" in page


def test_the_raw_asset_lands_an_export_and_shows_the_report(
    tmp_path: Path, generated: Path
) -> None:
    import dagster as dg

    from orchestration.assets.data import RAW_KEYS, raw_crm_files
    from orchestration.resources import build_resources

    sample = make_sample_export("salesforce", tmp_path / "export", raw_dir=generated)
    data_dir = tmp_path / "data"
    result = dg.materialize(
        [raw_crm_files],
        resources=build_resources(data_dir=str(data_dir)),
        run_config={
            "ops": {
                "raw_crm_files": {
                    "config": {"mapping": "salesforce", "export_dir": str(sample.export_dir)}
                }
            }
        },
    )
    assert result.success
    metadata = {
        e.asset_key: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    leads = metadata[RAW_KEYS["leads"]]
    assert leads["landed_rows_out"].value == 300
    assert leads["landed_rows_in"].value == 300 + sample.faults["duplicate_ids"]
    assert leads["landed_dropped"].value == {"duplicate_id": sample.faults["duplicate_ids"]}
    assert leads["values_rejected"].value > 0
    assert (data_dir / "raw" / "leads.csv").is_file()


def test_a_contract_file_the_mapping_does_not_make_is_emptied(
    tmp_path: Path, generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An optional raw file left by the generator (say a field history) would describe other
    leads: landing an export that lacks it leaves it with its header only."""
    import ml.landing.land as land_module

    extra = {"lead_field_history": ("lead_id", "changed_at", "field")}
    monkeypatch.setattr(land_module, "RAW_COLUMNS", {**RAW_COLUMNS, **extra})
    sample = make_sample_export("dynamics", tmp_path / "export", raw_dir=generated, faults=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "lead_field_history.csv").write_text("lead_id,changed_at,field\nL0000001,x,y\n")
    land_export("dynamics", sample.export_dir, raw)
    assert (raw / "lead_field_history.csv").read_text() == "lead_id,changed_at,field\n"
