"""End to end: a fault-injected vendor export, landed, then the nightly graph (dbt build → Feast
apply/refresh → train → promote → score) scores every open lead of the export."""

from __future__ import annotations

import pandas as pd
import pytest
from pipeline_data import make_settings

from ml.crm import crm_engine, read_current_scores
from ml.landing import land_from_settings, make_sample_export


@pytest.mark.slow
def test_every_open_lead_of_a_faulty_export_is_scored(tmp_path) -> None:
    from orchestration.demo import run_demo

    settings = make_settings(tmp_path / "data")
    g = settings.generator  # the pipeline tests' size: enough history for training
    sample = make_sample_export(
        "salesforce",
        tmp_path / "export",
        n_leads=g.n_leads,
        days=g.days,
        end_date=g.end_date,
        seed=8,
    )
    report = land_from_settings(settings, "salesforce", sample.export_dir)
    assert report.files["leads"].rows_out == g.n_leads

    ok, meta = run_demo(str(settings.paths.data_dir), generate=False)
    assert ok, meta

    latest = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet")
    as_of = pd.Timestamp(latest["snapshot_ts"].max())
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    leads = pd.read_csv(settings.paths.raw_dir / "leads.csv", dtype=str, keep_default_na=False)
    conversions = pd.read_csv(settings.paths.raw_dir / "conversions.csv", dtype=str)
    created = pd.to_datetime(leads["created_at"], utc=True, format="ISO8601")
    converted = pd.to_datetime(
        leads["lead_id"].map(conversions.set_index("lead_id")["converted_at"]),
        utc=True,
        format="ISO8601",
    )
    max_age = pd.Timedelta(days=settings.features.max_lead_age_days)
    # open at as_of: created before it, not older than the scoring horizon (a day's margin on
    # each edge), not converted by then
    open_leads = leads.loc[
        (created < as_of - pd.Timedelta(days=1))
        & (created > as_of - max_age + pd.Timedelta(days=1))
        & ~(converted <= as_of),
        "lead_id",
    ]
    engine = crm_engine(settings, read_only=True)
    scores = read_current_scores(engine)
    engine.dispose()
    assert len(open_leads) > 500
    missing = set(open_leads) - set(scores["lead_id"])
    assert not missing, f"{len(missing)} open leads not scored, e.g. {sorted(missing)[:5]}"
    assert set(scores["lead_id"]) == set(latest["lead_id"])
    # open leads with a planted bad attribute are among them (the value nulled, the lead kept)
    bad = leads["lead_source"].eq("Carrier pigeon") | leads["company_size"].eq("lots")
    faulty_open = set(leads.loc[bad, "lead_id"]) & set(open_leads)
    assert faulty_open and faulty_open <= set(scores["lead_id"])
