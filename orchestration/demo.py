"""The main job on the embedded defaults (`make demo`): generate the default CRM data,
materialize the whole asset graph once in process for one scoring date (a daily partition), and
print a short summary. The run is recorded in the Dagster instance under
`paths.dagster_home` (data/dagster), so `make dagster` shows it with its metadata and checks.

Re-runnable: the generator is deterministic, dbt and the exports replace their outputs, the
scoring run of a date replaces that date, and a retrained identical model does not move
`@champion` unless it passes the gate again.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from ml.config import load_settings
from orchestration.definitions import build_definitions
from orchestration.partitions import scoring_date_key

# The same instance settings `make dagster` writes: no telemetry.
INSTANCE_YAML = "telemetry:\n  enabled: false\n"

# What the steps after dbt import (Feast, MLflow, XGBoost, Evidently: ~12 s on this machine),
# libraries first, then the modules that use them. The demo imports them in a thread while dbt
# builds in its own process and this one mostly waits for its events.
WARM_UP = (
    "feast", "xgboost", "mlflow", "evidently", "evidently.presets", "evidently.metrics",
    "ml.feature_store", "ml.training_set", "ml.retrain", "ml.batch", "ml.monitoring.reports",
)


def warm_up(modules: tuple[str, ...] = WARM_UP, settings: Any | None = None) -> threading.Thread:
    """Import `modules` in a daemon thread, then (with `settings`) open the MLflow store, which
    creates a new store's tables (seconds of MLflow's migrations; a step opening the store
    meanwhile waits for it). Anything that fails here is left to the step that needs it (which
    then raises its own error)."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the step importing it reports the error
                logging.getLogger(__name__).debug("warm-up import of %s failed", name)
        if settings is not None:
            try:
                from ml.registry.client import mlflow_client

                mlflow_client(settings)
            except Exception:  # noqa: BLE001 - the training step reports the error
                logging.getLogger(__name__).debug("warm-up of the MLflow store failed")

    thread = threading.Thread(target=load, name="import-warm-up", daemon=True)
    thread.start()
    return thread


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        out[key] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    out["checks"] = {
        f"{e.asset_key.to_user_string()}:{e.check_name}": {
            "passed": e.passed,
            "severity": e.severity.value,
            "description": e.description,
        }
        for e in result.get_asset_check_evaluations()
    }
    return out


def persistent_instance(home: Path) -> dg.DagsterInstance:
    """The Dagster instance stored under `home` (what `dg dev` opens with DAGSTER_HOME=home)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(home))


def run_demo(
    data_dir: str | None = None,
    generate: bool = True,
    log_level: str = "WARNING",
    scoring_date: date | None = None,
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Materialize every asset and run every check once, in process, as a run of the code
    location's asset job recorded in the instance under `paths.dagster_home`.

    Args:
        scoring_date: the daily partition (the CRM date scoring and monitoring use); default
            the generator's end date, the as-of date of the generated data.

    Returns:
        (success, metadata by asset key, plus "checks": each check's verdict)
    """
    settings = load_settings(overrides={"paths.data_dir": data_dir} if data_dir else None)
    partition = scoring_date_key(scoring_date or settings.generator.end_date)
    job = build_definitions(data_dir=data_dir).resolve_implicit_global_asset_job_def()
    with persistent_instance(settings.paths.dagster_home) as instance:
        result = job.execute_in_process(
            run_config={
                "ops": {
                    "raw_crm_files": {"config": {"generate": generate}},
                    # seed 16 weeks of score history so matured-cohort figures exist at once
                    "crm_lead_scores": {"config": {"backfill_weeks": 16}},
                },
                "loggers": {"console": {"config": {"log_level": log_level}}},
            },
            instance=instance,
            partition_key=partition,
            tags={"trigger": "demo"},
            raise_on_error=False,
        )
        return result.success, _metadata(result)


def smoke_traffic(settings: Any, requests: int = 300) -> dict[str, Any]:
    """Send real-time requests through the scoring service in process: open leads by id, and
    every tenth one as a new web-form lead with the original payload. Fills the prediction log
    the dashboard's Serving page reads, and proves the online path works on the demo's stores."""
    import pandas as pd
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import SQLAlchemyError

    from ml.crm import crm_engine, read_current_scores
    from ml.serving.app import create_app
    from ml.serving.schemas import ORIGINAL_EXAMPLE

    leads = pd.read_parquet(
        settings.paths.marts_dir / "lead_features_latest.parquet",
        columns=["lead_id", "lead_source", "industry", "company_size", "engagement_score"],
    ).head(requests)
    statuses: list[int] = []
    latencies: list[float] = []
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            if time.monotonic() > deadline:
                return {"ready": False}
            time.sleep(0.2)
        for i, lead in enumerate(leads.itertuples()):
            payload: dict[str, Any] = {"lead_id": lead.lead_id}
            if i % 10 == 9:  # a web form creating a lead the store does not know yet
                payload = {
                    "lead_id": f"web-form-{i}",
                    "lead_source": lead.lead_source,
                    "industry": lead.industry,
                    "company_size": int(lead.company_size),
                    "engagement_score": float(lead.engagement_score),
                    "website_visits": 3,
                    "email_opens": 1,
                }
            started = time.perf_counter()
            statuses.append(client.post("/predict", json=payload).status_code)
            latencies.append((time.perf_counter() - started) * 1000)
        example = client.post("/predict", json=ORIGINAL_EXAMPLE)
    engine = crm_engine(settings, read_only=True)
    try:
        open_scores = read_current_scores(engine)["score"].to_numpy(float)
    except SQLAlchemyError as exc:  # no scores table: the line says nothing was compared
        logging.getLogger(__name__).warning("the open leads' scores could not be read: %s", exc)
        open_scores = None
    finally:
        engine.dispose()
    return {
        "ready": True,
        "requests": len(statuses),
        "ok": sum(code == 200 for code in statuses),
        "p50_ms": round(sorted(latencies)[len(latencies) // 2], 1) if latencies else None,
        "example": example.json() if example.status_code == 200 else
        {"status": example.status_code},
        "open_lead_scores": open_scores,
    }


def example_line(smoke: dict[str, Any]) -> str:
    """The README's payload (a new lead) against the nightly scores of the open leads: a new
    lead's score is plausible when few stored leads score above it."""
    example, scores = smoke.get("example") or {}, smoke.get("open_lead_scores")
    if "score" not in example:
        return f"the README payload was not scored ({example.get('status', 'not sent')})"
    line = (f"the README payload scores {example['score']} ({example['tier']}, "
            f"{example['scored_by']} model)")
    if scores is None or not len(scores):
        return f"{line}; no open leads' scores to compare it with"
    p99 = float(np.percentile(scores, 99))
    above = float(np.mean(scores > example["score"]))
    verdict = "below" if example["score"] < p99 else "NOT below"
    return (f"{line}: {verdict} the 99th percentile of the {len(scores):,} open leads' "
            f"nightly scores ({p99:.1f}); {above:.1%} of them score higher")


def drift_verdict(summary: dict[str, Any]) -> str:
    """One line: which features drifted (PSI over the threshold) and the score drift."""
    if not summary:
        return "not measured"
    drifted = summary.get("drifted_features") or []
    head = (
        f"PSI > threshold on {', '.join(drifted)} (max {summary.get('max_psi')})"
        if drifted
        else f"no feature drifted (max PSI {summary.get('max_psi')})"
    )
    return f"{head}; score PSI {summary.get('prediction_psi')}"


def smoke_line(smoke: dict[str, Any]) -> str:
    if not smoke:
        return "not run"
    if not smoke.get("ready"):
        return "the service did not become ready"
    return (
        f"{smoke['ok']} of {smoke['requests']} /predict requests answered "
        f"(p50 {smoke['p50_ms']} ms, in process); see the dashboard's Serving page"
    )


def checks_line(checks: dict[str, dict[str, Any]]) -> str:
    """How many asset checks (dbt tests and Python checks) passed, and which did not."""
    failed = [name for name, c in checks.items() if not c["passed"]]
    line = f"{len(checks) - len(failed)} of {len(checks)} passed (dbt tests and Python checks)"
    return line + (f"; FAILED: {', '.join(sorted(failed))}" if failed else "")


def summary_lines(
    meta: dict[str, dict[str, Any]], seconds: float, data_dir: str, dagster_home: str = ""
) -> list[str]:
    raw = {k.split("/")[-1]: v.get("rows") for k, v in meta.items() if k.startswith("crm/")}
    marts = meta.get("mart_parquet", {})
    rejected = {
        k.removeprefix("rejected_"): v for k, v in marts.items() if k.startswith("rejected_")
    }
    model = meta.get("challenger_model", {})
    champion = meta.get("champion_model", {})
    scores = meta.get("crm_lead_scores", {})
    drift = meta.get("drift_report", {})
    reports = (drift.get("summary") or {}).get("reports", {})
    tiers = ", ".join(f"{t}={scores.get(f'tier_{t}', 0)}" for t in "ABCD")
    return [
        f"Lead-scoring demo finished in {seconds:.0f} s",
        f"  raw rows        : {raw}",
        f"  rejected rows   : {rejected}",
        f"  feature rows    : {marts.get('rows_lead_features')} snapshots, "
        f"{marts.get('rows_lead_features_latest')} open leads, "
        f"{marts.get('rows_lead_labels')} labels",
        f"  backtest        : {model.get('champion_family')} AUC {model.get('backtest_auc_mean')} "
        f"(95 % CI {model.get('backtest_auc_ci95')}, embargo {model.get('embargo_days')} days), "
        f"lift share of oracle {model.get('lift_share_of_oracle_mean')}; logistic "
        f"{model.get('baseline_logistic_auc_mean')}, rules {model.get('baseline_rules_auc_mean')}",
        f"  request model   : {model.get('request_model')}",
        f"  challenger      : v{model.get('model_version')} ({model.get('champion_family')}, "
        "refit on all matured labels)",
        f"  champion        : v{champion.get('champion_version')} — {champion.get('decision')}",
        f"  scored leads    : {scores.get('scored_leads')} ({tiers}) "
        f"into {scores.get('crm_database')}",
        f"  drift           : {drift_verdict(drift.get('summary') or {})}",
        f"  reports         : {reports.get('data_drift_html', data_dir + '/reports')}",
        f"  real time       : {smoke_line(meta.get('smoke', {}))}",
        f"  new lead        : {example_line(meta.get('smoke', {}))}",
        f"  asset checks    : {checks_line(meta.get('checks', {}))}",
        f"  explore         : make dagster   (Dagster UI on http://127.0.0.1:3000: this run, "
        f"recorded in {dagster_home})",
        "                    make mlflow-ui (MLflow UI on http://127.0.0.1:5000)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="where every generated file goes (default: settings)")
    parser.add_argument("--no-generate", action="store_true", help="use the files in data/raw")
    parser.add_argument(
        "--date",
        type=date.fromisoformat,
        help="the scoring date (daily partition); default the generator's end_date",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The summary below is the demo's output; library chatter goes to the log level WARNING.
    for name in ("mlflow", "dagster", "feast", "evidently"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # MLflow's per-download progress bars would bury the summary.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = load_settings(overrides={"paths.data_dir": args.data_dir} if args.data_dir else None)
    started = time.perf_counter()
    warm_up(settings=settings)
    ok, meta = run_demo(args.data_dir, generate=not args.no_generate, scoring_date=args.date)
    if ok:
        meta["smoke"] = smoke_traffic(settings)
    seconds = time.perf_counter() - started
    home = str(settings.paths.dagster_home)
    for line in summary_lines(meta, seconds, str(settings.paths.data_dir), home):
        print(line)
    if not ok:
        print("the run FAILED: see the errors above (the previous good state is left in place)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
