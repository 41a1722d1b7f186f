"""Each page run by Streamlit's AppTest: on the filled stores the figures shown are the
stores' figures; on an empty data folder each page shows its empty state and creates nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ml.config import Settings
from ml.dashboard.pages import PAGES

APP = Path(__file__).resolve().parents[2] / "ml" / "dashboard" / "app.py"
PAGE_MODULES = [module.__name__.rsplit(".", 1)[-1] for _, _, _, module in PAGES]


def _page_script(module: str) -> None:
    import importlib

    from ml.config import load_settings

    importlib.import_module(f"ml.dashboard.pages.{module}").render(load_settings())


def run_page(module: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(data_dir))
    at = AppTest.from_function(_page_script, args=(module,), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_app_navigation_opens_the_overview(filled: Settings, monkeypatch) -> None:
    monkeypatch.setenv("LEAD_SCORING_DATA_DIR", str(filled.paths.data_dir))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Can we trust today's scores?"


def test_overview_shows_registry_runs_and_alerts(filled: Settings, monkeypatch) -> None:
    from ml.crm import crm_engine, read_runs
    from ml.registry import current_version, mlflow_client

    shown = metrics(run_page("overview", filled.paths.data_dir, monkeypatch))
    client = mlflow_client(filled)
    for alias in ("champion", "challenger"):
        version = current_version(filled, alias)
        mv = client.get_model_version(filled.registry.model_name, str(version))
        run_metrics = client.get_run(mv.run_id).data.metrics
        auc = run_metrics.get("backtest_auc_mean", run_metrics["test_auc"])
        assert shown[alias.capitalize()] == f"v{version}"
        assert shown[f"{alias.capitalize()} backtest AUC"] == f"{auc:.4f}"
    last = read_runs(crm_engine(filled, read_only=True)).iloc[-1]
    assert shown["Last scoring run"] == str(last["scoring_date"])
    assert shown["Run status"] == last["status"] == "succeeded"
    assert shown["Scored leads"] == f"{last['rows']:,}"
    # state.py: one warning and one info alert inside the cool-down, the critical one is older
    assert (shown["Warning alerts"], shown["Info alerts"], shown["Critical alerts"]) == (
        "1",
        "1",
        "0",
    )


def test_scores_page_and_lead_lookup(filled: Settings, monkeypatch) -> None:
    from ml.crm import crm_engine, read_current_scores, read_history

    engine = crm_engine(filled, read_only=True)
    current = read_current_scores(engine)
    at = run_page("scores", filled.paths.data_dir, monkeypatch)
    shown = metrics(at)
    assert shown["Leads scored"] == f"{len(current):,}"
    assert shown["Mean score"] == f"{current['score'].mean():.1f}"
    assert shown["Tier A share"] == f"{(current['tier'] == 'A').mean():.1%}"

    lead = current.iloc[5]
    at.text_input(key="lead_id").input(lead["lead_id"]).run()
    assert not at.exception
    shown = metrics(at)
    assert shown["Lead score"] == f"{lead['score']:.1f}"
    assert shown["Lead tier"] == lead["tier"]
    history = read_history(engine)
    assert len(history[history["lead_id"] == lead["lead_id"]]) == 3  # three scoring dates
    text = " ".join(m.value for m in at.markdown)
    assert "Viewed the pricing page 3 times in 7 days" in text
    assert "No activity for 21 days" in text

    at.text_input(key="lead_id").input("NO-SUCH-LEAD").run()
    assert "NO-SUCH-LEAD" in at.warning[0].value


def test_drift_page_matches_the_store(filled: Settings, monkeypatch) -> None:
    from ml.monitoring.store import read_metrics

    rows = read_metrics(filled, "data_drift")
    last = rows[(rows["run_date"] == rows["run_date"].max()) & (rows["metric"] == "psi")]
    shown = metrics(run_page("drift", filled.paths.data_dir, monkeypatch))
    assert shown["Features monitored"] == str(len(last))
    assert shown["Features drifted (PSI)"] == str(int((last["status"] == "drift").sum())) == "1"
    assert shown["Max PSI"] == f"{last['value'].max():.3f}"
    pred = read_metrics(filled, "prediction_drift")
    score_psi = pred[(pred["feature"] == "probability") & (pred["metric"] == "psi")]
    latest = score_psi.sort_values("run_date")["value"].iloc[-1]
    assert shown["Score PSI"] == f"{latest:.3f}"


def test_drift_page_offers_every_report_of_a_date(filled: Settings, monkeypatch) -> None:
    at = run_page("drift", filled.paths.data_dir, monkeypatch)
    newest = sorted(p.name for p in (filled.paths.reports_dir / "monitoring").iterdir())[-1]
    assert at.selectbox(key="report_date").value == newest
    assert at.radio(key="report_open").options == ["none", "data_drift", "prediction_drift"]
    at.radio(key="report_open").set_value("data_drift").run()
    assert not at.exception


def test_performance_page_shows_the_latest_measurement_of_the_latest_cohort(
    filled: Settings, monkeypatch
) -> None:
    from ml.monitoring.store import read_metrics

    perf = read_metrics(filled, "performance")
    auc = perf[perf["metric"] == "auc"]
    cohort = auc[auc["cohort"] == auc["cohort"].max()]
    latest = cohort.sort_values("recorded_at")["value"].iloc[-1]  # the last run's re-measurement
    shown = metrics(run_page("performance", filled.paths.data_dir, monkeypatch))
    assert shown["Cohort AUC"] == f"{latest:.4f}"
    business = read_metrics(filled, "business")
    lift = business[
        (business["metric"] == "lift_a_over_base")
        & (business["cohort"] == business["cohort"].max())
    ]
    assert shown["Lift of tier A"] == f"{lift.sort_values('recorded_at')['value'].iloc[-1]:.2f}×"


def test_online_tests_page_shows_the_ab_report(filled: Settings, monkeypatch) -> None:
    from ml.serving.ab_report import ab_report, load_conversions
    from ml.serving.prediction_log import read_log

    log = read_log(filled)
    at = run_page("online", filled.paths.data_dir, monkeypatch)
    shown = metrics(at)
    log["logged_at"] = pd.to_datetime(log["logged_at"])
    served = log[log["served"].astype(bool)]
    served = served[served["logged_at"] >= served["logged_at"].max() - pd.Timedelta(hours=24)]
    share = (served["variant"] == "challenger").mean()
    assert shown["Challenger share of served predictions"] == f"{share:.1%}"
    report = ab_report(filled, log, load_conversions(filled))
    assert at.info[0].value == f"Verdict: {report.verdict}"
    assert shown["p-value"] == f"{report.p_value:.4g}"
    assert shown["Leads needed per variant"] == f"{report.needed_per_variant:,}"


def test_serving_page_matches_the_prediction_log(filled: Settings, monkeypatch) -> None:
    from ml.serving.prediction_log import read_log

    log = read_log(filled)
    log["logged_at"] = pd.to_datetime(log["logged_at"])
    window = log[log["logged_at"] >= log["logged_at"].max() - pd.Timedelta(hours=24)]
    served = window[window["served"].astype(bool)]
    shown = metrics(run_page("serving", filled.paths.data_dir, monkeypatch))
    assert shown["Requests"] == f"{len(served):,}"
    assert shown["Error rate"] == f"{(served['status'] != 'ok').mean():.2%}"
    assert shown["Latency p99"] == f"{np.percentile(served['latency_ms'], 99):.1f} ms"


@pytest.mark.parametrize("module", PAGE_MODULES)
def test_empty_store_shows_the_empty_state(module: str, empty_dir: Path, monkeypatch) -> None:
    at = run_page(module, empty_dir, monkeypatch)
    assert at.info, "an empty store must say what to run"
    assert "run `" in at.info[-1].value or "lead-scoring serve" in at.info[-1].value
    assert list(empty_dir.iterdir()) == [], "looking at an empty folder must not create stores"


def test_scores_page_shows_the_settings_vocabulary(empty_dir: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    import yaml

    from ml.config import DEFAULT_CONFIG

    tree = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    tree["vocabulary"]["activity_types"]["whatsapp_reply"] = {"engagement_weight": 3}
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(tree), encoding="utf-8")
    monkeypatch.setenv("LEAD_SCORING_CONFIG", str(config))
    at = run_page("scores", empty_dir, monkeypatch)
    activities = at.dataframe[0].value
    row = activities[activities["activity_type"] == "whatsapp_reply"]
    assert row["features"].tolist() == [
        "n_whatsapp_reply_7d, n_whatsapp_reply_30d, n_whatsapp_reply_90d"]
    assert row["engagement_weight"].tolist() == [3.0]
