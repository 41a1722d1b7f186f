"""The whole asset graph in process on small generated data, then a broken raw file."""

import csv

import dagster as dg
import pandas as pd
import pytest
from pipeline_data import make_settings

from ml.crm import crm_engine, read_current_scores
from ml.data.generator import generate_from_settings
from orchestration.definitions import ALL_ASSETS
from orchestration.demo import run_demo
from orchestration.resources import build_resources


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("graph")
    settings = make_settings(data_dir)
    generate_from_settings(settings)
    ok, meta = run_demo(str(data_dir), generate=False)
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
        ALL_ASSETS,
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("model"),
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
