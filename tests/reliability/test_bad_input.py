"""Hostile exports for every shipped CRM mapping (hypothesis): landing never crashes, and every
row is accounted for (rows out = rows in - dropped + added, per contract file, equal to the rows
written); a file it cannot read at all is a DataError naming the file, and then nothing of the
raw zone changed. The long version (more examples, and the raw contract through dbt) is
tests/benchmarks/bad_input.py."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _bad_input import Mutation, mutate, mutations
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ml.errors import DataError
from ml.landing import land_export, make_sample_export
from ml.landing.mapping import available_mappings

VENDORS = ["salesforce", "hubspot", "dynamics"]


def test_every_shipped_mapping_is_fuzzed() -> None:
    assert sorted(available_mappings()) == sorted(VENDORS)


@pytest.fixture(scope="module")
def clean_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per vendor: a clean small export and the raw zone it lands as (the previous landing)."""
    root = tmp_path_factory.mktemp("clean-exports")
    out = {}
    for v in VENDORS:
        export = make_sample_export(v, root / v, n_leads=12, days=30, seed=3,
                                    faults=False).export_dir
        land_export(v, export, root / f"{v}-raw")
        out[v] = (export, root / f"{v}-raw")
    return out


def raw_rows(raw_dir: Path) -> dict[str, int]:
    return {p.stem: len(pd.read_csv(p, dtype=str, keep_default_na=False))
            for p in sorted(raw_dir.glob("*.csv"))}


def land_mutated(vendor: str, clean: tuple[Path, Path], work: Path, change: list[Mutation]
                 ) -> None:
    """Land the clean export with one mutation per file; check the accounting or the error."""
    export, raw = work / "export", work / "raw"
    shutil.rmtree(work, ignore_errors=True)
    export.mkdir(parents=True)
    files = sorted(clean[0].iterdir())
    for path, m in zip(files, change * len(files), strict=False):
        mutate(path, export / path.name, m)
    shutil.copytree(clean[1], raw)  # the previous landing: what an error must leave in place
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    try:
        report = land_export(vendor, export, raw)
    except DataError as exc:
        message = str(exc)
        assert any(p.name in message for p in files) or "export" in message, message
        assert {p.name: p.read_bytes() for p in raw.iterdir()} == before, "partial landing"
        return
    written = raw_rows(raw)
    for name, f in report.files.items():
        expected = f.rows_in - sum(f.dropped.values()) + sum(f.added.values())
        assert f.rows_out == expected, (name, f.rows_in, f.dropped, f.added, f.rows_out)
        assert written[name] == f.rows_out, (name, written[name], f.rows_out)


def test_a_row_longer_than_the_header_is_an_error_naming_the_file(clean_exports, tmp_path):
    export, raw = clean_exports["hubspot"]
    shutil.copytree(export, tmp_path / "export")
    shutil.copytree(raw, tmp_path / "raw")
    before = {p.name: p.read_bytes() for p in (tmp_path / "raw").iterdir()}
    contacts = tmp_path / "export" / "contacts.csv"
    contacts.write_text(contacts.read_text(encoding="utf-8-sig") + "1,2,3,4,5,6,7,8,9,10,11,12,"
                        "13,14,15,16\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"contacts\.csv: not a well-formed CSV file .*line"):
        land_export("hubspot", tmp_path / "export", tmp_path / "raw")
    assert {p.name: p.read_bytes() for p in (tmp_path / "raw").iterdir()} == before


def test_a_carriage_return_inside_a_cell_stays_in_its_row(clean_exports, tmp_path) -> None:
    """Found by the fuzzing: a quoted CR in an activity id was written unquoted to the raw file,
    and read back as two rows."""
    export, _ = clean_exports["salesforce"]
    shutil.copytree(export, tmp_path / "export")
    task = tmp_path / "export" / "Task.csv"
    rows = list(csv.reader(task.open(newline="", encoding="utf-8-sig")))
    rows[1][0] = "00T\rBROKEN"
    with task.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)  # the CR is quoted in the export
    report = land_export("salesforce", tmp_path / "export", tmp_path / "raw")
    assert raw_rows(tmp_path / "raw")["activities"] == report.files["activities"].rows_out


@pytest.mark.parametrize("vendor", VENDORS)
@settings(max_examples=8, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],  # no shrinking in CI: minutes per failure
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(change=st.lists(mutations, min_size=1, max_size=3))
def test_a_hostile_export_lands_with_every_row_accounted_for(
        vendor, change, clean_exports, tmp_path) -> None:
    land_mutated(vendor, clean_exports[vendor], tmp_path / "w", change)
