"""The whole asset graph in process on a fault-injected vendor export (a Salesforce sample export
made from small generated data, landed through its mapping), recorded in a persistent Dagster
instance with its checks: every open lead of the export is scored, each Python check fails on a
broken output, then a broken raw file stops the graph. One graph run serves every test here (it
is the suite's most expensive fixture)."""

import csv
import shutil
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pipeline_data import make_settings
from sqlalchemy import delete, insert, select

from ml.batch import score_open_leads
from ml.crm import crm_engine, lead_score_history, read_current_scores
from ml.errors import DataError
from ml.landing import land_from_settings, make_sample_export
from ml.quality import challenger_auc, score_coverage, training_positives
from ml.retrain import load_training_set, save_training_set
from ml.training_set import LABEL
from orchestration.checks import ALL_CHECKS
from orchestration.definitions import ALL_ASSETS
from orchestration.demo import example_line, run_demo, smoke_traffic
from orchestration.resources import build_resources

PYTHON_CHECKS = {
    "crm_lead_scores:one_score_per_open_lead",
    "training_set:training_positives_at_least_minimum",
    "challenger_model:challenger_auc_at_least_gate",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    settings = make_settings(root / "data")
    g = settings.generator  # the pipeline tests' size: enough history for training
    sample = make_sample_export(
        "salesforce", root / "export", n_leads=g.n_leads, days=g.days, end_date=g.end_date, seed=8
    )
    report = land_from_settings(settings, "salesforce", sample.export_dir)
    assert report.files["leads"].rows_out == g.n_leads
    ok, meta = run_demo(str(settings.paths.data_dir), generate=False)
    return settings, ok, meta


def test_full_graph_materializes_and_scores_every_open_lead(demo_run):
    settings, ok, meta = demo_run
    assert ok
    open_leads = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet")
    engine = crm_engine(settings, read_only=True)
    scores = read_current_scores(engine)
    engine.dispose()
    assert len(scores) == len(open_leads) == meta["crm_lead_scores"]["scored_leads"]
    assert set(scores["lead_id"]) == set(open_leads["lead_id"])
    assert meta["challenger_model"]["backtest_auc_mean"] >= 0.75
    assert meta["champion_model"]["champion_version"] is not None
    assert "max_psi" in meta["drift_report"]


def test_the_demo_says_where_the_readme_payload_falls_among_open_leads(demo_run):
    settings, ok, _ = demo_run
    assert ok
    smoke = smoke_traffic(settings, requests=20)
    assert smoke["ok"] == smoke["requests"] == 20
    example, scores = smoke["example"], smoke["open_lead_scores"]
    assert example["scored_by"] == "request" and 0 < example["score"] < 100
    assert len(scores) == len(pd.read_parquet(
        settings.paths.marts_dir / "lead_features_latest.parquet"))
    verdict = "below" if example["score"] < np.percentile(scores, 99) else "NOT below"
    line = example_line(smoke)
    assert f"scores {example['score']} ({example['tier']}, request model): {verdict} " in line
    assert example_line({"example": {"status": 503}}) == "the README payload was not scored (503)"
    assert example_line({"example": example, "open_lead_scores": None}).endswith(
        "; no open leads' scores to compare it with")
    high = example_line({**smoke, "open_lead_scores": np.full(10, 100.0)})
    assert ": below the 99th percentile of the 10 open leads' nightly scores (100.0)" in high


def test_every_open_lead_of_a_faulty_export_is_scored(demo_run):
    """No lead of the export is lost for a bad attribute: the value is nulled, the lead kept."""
    settings, ok, meta = demo_run
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


def test_the_run_is_recorded_with_its_partition_metadata_and_checks(demo_run):
    """What `make dagster` shows: the run in the instance under paths.dagster_home, each
    asset's materialization with its metadata, the dbt and Python check results."""
    settings, ok, meta = demo_run
    assert ok
    failed = [name for name, check in meta["checks"].items() if not check["passed"]]
    assert not failed
    assert set(meta["checks"]) >= PYTHON_CHECKS
    assert len(meta["checks"]) > 50  # the dbt tests too

    day = settings.generator.end_date.isoformat()
    assert meta["crm_lead_scores"]["scoring_date"] == day
    assert meta["drift_report"]["run_date"] == day
    with dg.DagsterInstance.from_config(str(settings.paths.dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.is_success and run.tags["dagster/partition"] == day
        scores = instance.get_latest_materialization_event(dg.AssetKey("crm_lead_scores"))
        materialization = scores.asset_materialization
        assert materialization.partition == day
        assert (
            materialization.metadata["scored_leads"].value
            == meta["crm_lead_scores"]["scored_leads"]
        )
        model = instance.get_latest_materialization_event(dg.AssetKey("challenger_model"))
        assert model.asset_materialization.metadata["backtest_auc_mean"].value >= 0.75
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("crm_lead_scores"), "one_score_per_open_lead"), limit=5
        )
        assert [r.status.value for r in records] == ["SUCCEEDED"]
        assert records[0].run_id == run.run_id


def test_a_partition_before_the_data_is_refused(demo_run):
    settings, ok, _ = demo_run
    assert ok
    before = settings.generator.end_date - timedelta(days=1)
    with pytest.raises(DataError, match="before the data's as-of date"):
        score_open_leads(settings, before)


def test_one_score_per_open_lead_fails_on_a_missing_or_foreign_score(demo_run, tmp_path):
    settings, ok, _ = demo_run
    assert ok
    day = settings.generator.end_date
    shutil.copy(settings.paths.data_dir / "crm" / "crm.db", tmp_path / "crm.db")
    copy = make_settings(
        settings.paths.data_dir, **{"paths.crm_url": f"sqlite:///{tmp_path}/crm.db"}
    )
    assert score_coverage(copy, day).passed

    engine = crm_engine(copy)
    with engine.begin() as conn:
        row = conn.execute(
            select(lead_score_history).where(lead_score_history.c.scoring_date == day).limit(1)
        ).one()
        conn.execute(
            delete(lead_score_history).where(
                (lead_score_history.c.scoring_date == day)
                & (lead_score_history.c.lead_id == row.lead_id)
            )
        )
    outcome = score_coverage(copy, day)
    assert (
        not outcome.passed
        and f"1 open lead(s) without a score ({row.lead_id})" in outcome.description
    )
    with engine.begin() as conn:
        conn.execute(insert(lead_score_history).values({**row._asdict(), "lead_id": "NOT-OPEN-1"}))
    engine.dispose()
    outcome = score_coverage(copy, day)
    assert (
        not outcome.passed
        and "1 score(s) of leads that are not open (NOT-OPEN-1)" in outcome.description
    )
    assert (
        outcome.figures["unscored_open_leads"] == outcome.figures["scores_of_leads_not_open"] == 1
    )


def test_training_positives_check_fails_below_the_minimum(demo_run, tmp_path):
    settings, ok, _ = demo_run
    assert ok
    frame = load_training_set(settings)
    positives = int(frame[LABEL].sum())
    assert training_positives(settings).passed
    strict = make_settings(
        settings.paths.data_dir, **{"training.min_positive_examples": positives + 1}
    )
    outcome = training_positives(strict)
    assert not outcome.passed and f"{positives} converted examples" in outcome.description

    # the check reads the saved training set, not the asset's report: a set with fewer
    # positives written there fails with the default minimum
    few = make_settings(tmp_path)
    keep = frame[frame[LABEL] == 1].head(few.training.min_positive_examples - 1)
    save_training_set(few, pd.concat([keep, frame[frame[LABEL] == 0].head(100)]))
    assert not training_positives(few).passed


def test_challenger_auc_check_fails_below_the_gate(demo_run):
    settings, ok, meta = demo_run
    assert ok
    auc = meta["challenger_model"]["backtest_auc_mean"]
    outcome = challenger_auc(settings)
    assert outcome.passed and outcome.figures["auc"] == pytest.approx(auc, abs=1e-3)
    strict = make_settings(settings.paths.data_dir, **{"registry.min_auc": min(1.0, auc + 0.01)})
    outcome = challenger_auc(strict)
    assert not outcome.passed and "registry.min_auc" in outcome.description


def test_the_demo_champion_has_its_model_card_logged_with_it(demo_run):
    """Training logs a model card with every registered version; the champion's is on its run,
    and its backtest figure is the one the graph reported."""
    from ml.model_card import card_paths, model_card, read_logged_card
    from ml.registry import mlflow_client

    settings, ok, meta = demo_run
    assert ok
    version = int(meta["champion_model"]["champion_version"])
    run_id = mlflow_client(settings, create=False).get_model_version(
        settings.registry.model_name, str(version)).run_id
    logged = read_logged_card(settings, run_id)
    assert logged is not None, f"no model card on the run of v{version}"
    assert logged.splitlines()[0] == f"# Model card: {settings.registry.model_name} v{version}"
    card = model_card(settings, version)
    assert logged == card.markdown()
    assert all(path.is_file() for path in card_paths(settings, version))
    auc = next(b for b in card.backtest if b["metric"] == "auc")
    assert auc["mean"] == pytest.approx(meta["challenger_model"]["backtest_auc_mean"], abs=1e-4)
    assert auc["ci95_low"] < auc["mean"] < auc["ci95_high"]
    assert {s["segment"] for s in card.segments} == set(settings.evaluation.segments)
    assert card.calibration and card.features and card.limits


def _break_created_at(path, share: float) -> None:
    """Rewrite created_at of the first `share` of leads in a format nobody exports."""
    rows = list(csv.DictReader(path.open(newline="")))
    for row in rows[: int(len(rows) * share)]:
        row["created_at"] = "yesterday-ish"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_broken_raw_file_fails_the_quarantine_check_and_stops_scoring(demo_run):
    settings, ok, _ = demo_run
    assert ok
    engine = crm_engine(settings, read_only=True)
    before = read_current_scores(engine)
    engine.dispose()
    mart_before = (settings.paths.marts_dir / "lead_features.parquet").read_bytes()

    _break_created_at(settings.paths.raw_dir / "leads.csv", share=0.2)
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("model"),
        partition_key=settings.generator.end_date.isoformat(),
        resources=build_resources(data_dir=str(settings.paths.data_dir)),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        raise_on_error=False,
    )
    assert not result.success
    failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert any(name.startswith("rejected_share_at_most") for name in failed_checks), failed_checks
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "crm_lead_scores" not in materialized and "mart_parquet" not in materialized
    engine = crm_engine(settings, read_only=True)
    after = read_current_scores(engine)
    engine.dispose()
    pd.testing.assert_frame_equal(before, after)
    assert (settings.paths.marts_dir / "lead_features.parquet").read_bytes() == mart_before
