"""A fault-injected export of each vendor lands with every lead kept, the report counting exactly
the planted faults, and dbt staging adding up (accepted + rejected = raw) with no lead lost.

The export is the generator's output in the vendor's shape (ml/landing/samples.py) with faults
planted: cp1252 and é in company names, a BOM, CRLF, blank lines, a second date format, case
variants, unknown categories, unparseable sizes, thousands separators, country codes, duplicate
ids (an older copy), orphan and future activities, a rep's own emails, activities about contacts.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ml.config import Settings, load_settings
from ml.landing import LandingReport, SampleExport, land_export, make_sample_export

AS_OF = datetime(2026, 11, 1)
N_LEADS = 1000


def _settings(data_dir: Path) -> Settings:
    return load_settings(overrides={"paths.data_dir": str(data_dir)})


@pytest.fixture(scope="module", params=["salesforce", "hubspot", "dynamics"])
def landed(request, tmp_path_factory) -> tuple[SampleExport, LandingReport, Settings]:
    vendor = request.param
    root = tmp_path_factory.mktemp(f"faults-{vendor}")
    settings = _settings(root / "data")
    sample = make_sample_export(vendor, root / "export", n_leads=N_LEADS, seed=5)
    report = land_export(
        vendor, sample.export_dir, settings.paths.raw_dir, settings.paths.reports_dir
    )
    return sample, report, settings


def _raw(settings: Settings, name: str) -> pd.DataFrame:
    return pd.read_csv(settings.paths.raw_dir / f"{name}.csv", dtype=str, keep_default_na=False)


def test_every_fault_kind_was_planted(landed) -> None:
    sample, _, _ = landed
    from ml.landing.samples import FAULTS

    assert set(sample.faults) == set(FAULTS)
    assert all(n > 0 for n in sample.faults.values()), sample.faults


def test_every_lead_lands_once(landed) -> None:
    sample, report, settings = landed
    leads = report.files["leads"]
    f = sample.faults
    assert leads.rows_in == N_LEADS + f["duplicate_ids"]
    assert leads.rows_out == N_LEADS
    assert leads.dropped == {"duplicate_id": f["duplicate_ids"]}
    landed_ids = _raw(settings, "leads")["lead_id"]
    assert landed_ids.is_unique
    assert set(landed_ids) == set(sample.lead_ids.values())


def test_report_counts_the_planted_lead_faults(landed) -> None:
    sample, report, _ = landed
    f, cols = sample.faults, report.files["leads"].columns
    # the older duplicate copies carry an unknown source too
    assert cols["lead_source"].counts["rejected"] == f["unknown_source"] + f["duplicate_ids"]
    assert cols["budget_band"].counts["rejected"] == f["unknown_budget"]
    assert cols["company_size"].counts["rejected"] == f["bad_size"]
    assert cols["company_size"].counts["folded"] == f["thousands"]
    assert cols["country"].counts["mapped"] == f["country_codes"]
    other_formats = sum(n for fmt, n in cols["created_at"].formats.items() if fmt != "iso")
    assert other_formats == f["other_date_format"]
    assert cols["created_at"].counts["rejected"] == 0
    assert cols["lead_source"].examples["rejected"][0] == ["Carrier pigeon", "Carrier pigeon"]


def test_report_counts_the_planted_file_and_activity_faults(landed) -> None:
    sample, report, settings = landed
    f = sample.faults
    acts = report.files["activities"]
    assert acts.dropped == {
        "not an engagement": f["not_engagements"],
        "not about a lead": f["not_lead_activities"],
    }
    assert acts.rows_out == acts.rows_in - f["not_engagements"] - f["not_lead_activities"]
    assert acts.columns["activity_type"].counts["rejected"] == 0
    blank = sum(
        e.blank_lines for name in ("leads", "activities") for e in report.files[name].exports
    )
    assert blank == f["blank_lines"]
    encodings = {e.export: e.encodings[0] for e in report.files["leads"].exports}
    expected = {"salesforce": "cp1252", "hubspot": "utf-8 with BOM", "dynamics": "utf-8"}
    assert set(encodings.values()) == {expected[sample.vendor]}

    activities = _raw(settings, "activities")
    leads = set(_raw(settings, "leads")["lead_id"])
    assert (~activities["lead_id"].isin(leads)).sum() == f["orphan_activities"]
    assert (activities["occurred_at"] > "2026-11-01").sum() == f["future_activities"]
    assert acts.future_rows == f["future_activities"]
    assert report.files["leads"].future_rows == 0


@pytest.fixture(scope="module")
def built(landed):
    from ml.warehouse import build_warehouse

    sample, report, settings = landed
    return sample, report, settings, build_warehouse(settings, as_of=AS_OF)


def test_the_duplicate_kept_is_the_most_recent(landed) -> None:
    sample, _, settings = landed
    # the older copies were given an unknown source; none of them may win
    leads = _raw(settings, "leads")
    assert (leads["lead_source"] == "Carrier pigeon").sum() == sample.faults["unknown_source"]


def _query(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.paths.warehouse), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_staging_keeps_every_landed_lead_and_adds_up(built) -> None:
    sample, _, settings, summary = built
    f = sample.faults
    for name in ("leads", "activities", "conversions"):
        assert summary.accepted_rows[name] + summary.rejected_rows[name] == summary.raw_rows[name]
    assert summary.rejected_rows["leads"] == 0
    assert summary.accepted_rows["leads"] == N_LEADS
    assert summary.rejected_rows["conversions"] == 0
    reasons = dict(
        _query(
            settings,
            "select rejection_reason, count(*) from stg_crm__activities_rejected group by 1",
        )
    )
    assert reasons == {
        "unknown_lead": f["orphan_activities"],
        "future_timestamp": f["future_activities"],
    }
    issues = dict(
        _query(settings, "select reason, count(*) from stg_crm__lead_attribute_issues group by 1")
    )
    assert issues == {
        "unknown_lead_source": f["unknown_source"],
        "unknown_budget_band": f["unknown_budget"],
        "invalid_company_size": f["bad_size"],
    }
