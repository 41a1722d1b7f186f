"""The case-study pages' figures and screenshots, from a finished `make demo` (`make docs-figures`).

Reads the demo's stores (MLflow, the monitoring store, the CRM database, the alias history, the
Evidently reports) and writes:

- `docs/_gen/figures/<page>.md`: the figures of each case-study page (tables read from the run,
  never typed), which the docs hook puts where the page says `<!-- figures -->`;
- `docs/case-study/img/*.png`: screenshots in headless Chromium of the MLflow UI (the champion's
  run, its artifacts with the model card, the registered model), the Evidently data-drift
  report and every dashboard page (Streamlit). The Dagster pictures (the asset lineage, the
  demo's run, its checks) are `tests/orchestration/ui_screenshots.py`'s (`make
  dagster-screenshot`).

Chromium is Debian's (`/usr/bin/chromium`, `--no-sandbox`), driven by the `playwright` package of
the `screenshots` extra; it never downloads a browser. Every server it starts listens on
127.0.0.1 and is stopped before it exits.

    python docs/_gen/demo_figures.py                      # the settings' data dir (make demo)
    python docs/_gen/demo_figures.py --data-dir /tmp/demo --no-screenshots
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "dashboard")]

import pandas as pd  # noqa: E402

from ml.config import Settings, load_settings  # noqa: E402

FIGURES_DIR = ROOT / "docs" / "_gen" / "figures"
IMG_DIR = ROOT / "docs" / "case-study" / "img"
PAGES = ("deployment", "online-testing", "monitoring", "retraining", "model-card")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# ------------------------------------------------------------------------- tables


def md_table(frame: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    """A Markdown table (no tabulate dependency); floats formatted, NaN as —."""
    if frame.empty:
        return "_(none)_"
    cols = [str(c) for c in frame.columns]

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(cell(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join(rows)


def _fig(name: str, caption: str) -> str:
    return f"![{caption}](img/{name})\n\n*{caption}*\n"


def _img(name: str, caption: str, shots: set[str]) -> str:
    """A screenshot reference, only for pictures this run (or an earlier one) produced."""
    return _fig(name, caption) if name in shots else ""


# ------------------------------------------------------------------------- facts


def champion_facts(settings: Settings) -> dict[str, Any]:
    from ml.model_card import model_card
    from ml.registry import CHALLENGER, CHAMPION, current_version

    champion = current_version(settings, CHAMPION)
    if champion is None:
        raise SystemExit(f"no @champion in {settings.paths.mlflow_tracking_uri}: run `make demo`")
    return {"champion": champion, "challenger": current_version(settings, CHALLENGER),
            "card": model_card(settings, champion)}


def deployment_page(settings: Settings, facts: dict[str, Any], shots: set[str]) -> str:
    from ml.registry import alias_history

    card = facts["card"]
    auc = next(b for b in card.backtest if b["metric"] == "auc")
    history = alias_history(settings).drop(columns=["id"], errors="ignore")
    tags = pd.DataFrame(sorted(card.reproducibility.items()), columns=["tag", "value"])
    families = pd.DataFrame(card.families).rename(columns={
        "auc_mean": "mean AUC", "ci95_low": "95 % low", "ci95_high": "95 % high"})
    return "\n".join([
        f"From the demo run: `@champion` is **v{facts['champion']}** ({card.family}), "
        f"`@challenger` is **v{facts['challenger']}**. The gate's figure, the champion's mean "
        f"backtest AUC, is **{auc['mean']:.4f}** (95 % interval {auc['ci95_low']:.4f} – "
        f"{auc['ci95_high']:.4f}, {auc['folds']} folds) against the floor "
        f"`registry.min_auc` = {settings.registry.min_auc:g}.",
        "",
        "Every family on the same folds:",
        "",
        md_table(families),
        "",
        "The alias history after the demo (`lead-scoring history`):",
        "",
        md_table(history),
        "",
        "The tags that pin what produced the champion:",
        "",
        md_table(tags),
        "",
        _img("mlflow-run.png", "MLflow: the champion's run (metrics, parameters, tags)", shots),
        _img("mlflow-artifacts.png",
             "MLflow: the run's artifacts, with the model card logged beside the plots", shots),
        _img("mlflow-registry.png", "MLflow: the registered model and its aliases", shots),
        _img("dashboard-overview.png",
             "Dashboard Overview: champion and challenger, the last nightly run, open alerts",
             shots),
    ])


def online_page(settings: Settings, facts: dict[str, Any], shots: set[str]) -> str:
    from ml.dashboard import data

    log = data.prediction_log(settings, hours=None)
    lines = [
        f"The demo sends real-time requests through the service in process, in its configured "
        f"mode `serving.mode` = `{settings.serving.mode}`. The prediction log it left:",
        "",
    ]
    if log.empty:
        lines.append("_(the demo's prediction log is empty)_")
    else:
        summary = data.serving_summary(log)
        lines += [md_table(pd.DataFrame([summary]), "{:.2f}"), ""]
        variants = data.variant_summary(log)
        if not variants.empty:
            lines += ["Per variant (served and shadow rows):", "", md_table(variants, "{:.3f}"),
                      ""]
        if facts["champion"] == facts["challenger"]:
            lines += [
                f"In the demo `@challenger` and `@champion` are the same version "
                f"(v{facts['champion']}): the shadow rows score identically, so the comparison "
                "shows no difference by construction. A retrain that registers a different "
                "version makes the comparison meaningful.",
                "",
            ]
    lines += [
        _img("dashboard-online-tests.png", "Dashboard: Online tests", shots),
        _img("dashboard-serving.png", "Dashboard: Serving (latency, errors, traffic)", shots),
    ]
    return "\n".join(lines)


def monitoring_page(settings: Settings, facts: dict[str, Any], shots: set[str]) -> str:
    from ml.dashboard import data
    from ml.monitoring.store import read_metrics

    rows = read_metrics(settings)
    if rows.empty:
        raise SystemExit("the monitoring store is empty: run `make demo` first")
    last = rows["run_id"].iloc[-1]
    run = rows[rows["run_id"] == last]
    lines = [f"From monitoring run **{last}** of the demo (model v{facts['champion']}).", ""]
    drift = run[(run["scope"] == "data_drift") & (run["metric"] == "psi")]
    if not drift.empty:
        table = drift[["feature", "value", "threshold", "status"]].rename(
            columns={"value": "PSI", "threshold": "threshold"}).sort_values("PSI", ascending=False)
        over = int((table["status"] != "ok").sum())
        lines += [f"**Data drift**: PSI of {len(table)} feature measurements against the "
                  f"training window (\"recent intake\": the leads created in the last "
                  f"{settings.monitoring.recent_intake_days} days against the reference's leads "
                  f"of the same age, threshold {settings.monitoring.recent_intake_psi_threshold:g}"
                  f"); {over} over its threshold. The ten largest:", "",
                  md_table(table.head(10)), ""]
    pred = run[run["scope"] == "prediction_drift"]
    if not pred.empty:
        lines += ["**Prediction drift**:", "",
                  md_table(pred[["metric", "feature", "value", "threshold", "status"]]), ""]
    perf = data.latest_per_cohort(read_metrics(settings, scope="performance"))
    if not perf.empty:
        auc = perf[perf["metric"] == "auc"][["cohort", "value", "threshold", "status"]]
        auc = auc.assign(cohort=auc["cohort"].dt.strftime("%Y-%m-%d")).rename(
            columns={"value": "AUC"})
        lines += ["**Matured-cohort AUC** (scoring cohorts whose label window has closed; they "
                  "overlap the training window in the demo, so they are optimistic):", "",
                  md_table(auc), ""]
    business = data.latest_per_cohort(read_metrics(settings, scope="business"))
    if not business.empty:
        lift = business[business["metric"].str.contains("lift")]
        if not lift.empty:
            latest = lift[lift["cohort"] == lift["cohort"].max()]
            tiers = latest[latest["metric"] == "lift_vs_base"][["feature", "value"]].rename(
                columns={"feature": "tier", "value": "conversion rate / cohort's base rate"})
            lines += [f"**Business metrics**: lift of each tier in the latest matured cohort "
                      f"({lift['cohort'].max():%Y-%m-%d}):", "", md_table(tiers, "{:.2f}"), ""]
    rules = settings.alerting.rules
    routes = settings.alerting.routes
    rule_table = pd.DataFrame(
        [{"rule": r, "severity": s, "channels": ", ".join(routes.get(s, [])) + ", jsonl"}
         for r, s in rules.items()])
    lines += ["**Alert rules** (severity from `alerting.rules`, channels from "
              "`alerting.routes`):", "", md_table(rule_table), ""]
    sent = data.alerts(settings)
    lines += ["**Alerts the demo raised** (the `alert_log` table; a channel without its "
              "secret in the environment is skipped):", ""]
    if sent.empty:
        lines += ["_(none)_", ""]
    else:
        lines += [md_table(sent[["rule", "severity", "channel", "status", "title"]]), ""]
    lines += [
        _img("evidently-data-drift.png", "Evidently data-drift report of the demo run", shots),
        _img("dashboard-drift.png", "Dashboard: Drift", shots),
        _img("dashboard-performance.png", "Dashboard: Performance and business", shots),
    ]
    return "\n".join(lines)


def retraining_page(settings: Settings, facts: dict[str, Any], shots: set[str]) -> str:
    from ml.monitoring.triggers import (
        champion_info,
        drift_trigger,
        new_labels_trigger,
        performance_trigger,
    )

    champion = champion_info(settings)
    decisions = [("data drift", drift_trigger(settings, champion)),
                 ("performance", performance_trigger(settings, champion)),
                 ("new labels", new_labels_trigger(settings, champion))]
    table = pd.DataFrame([{"trigger": name, "fires": "yes" if d.fire else "no",
                           "run key": d.key or "—", "why": d.reason} for name, d in decisions])
    card = facts["card"]
    folds = pd.DataFrame(card.folds)
    keep = [c for c in ("origin", "auc", "pr_auc", "brier", "ece", "logistic_full_auc",
                        "xgboost_full_auc", "rules_full_auc") if c in folds.columns]
    return "\n".join([
        "What the three sensors' conditions say on the demo's state (the functions the sensors "
        "call, `ml/monitoring/triggers.py`):",
        "",
        md_table(table),
        "",
        f"The champion's backtest, fold by fold ({card.family} chosen; the other families' AUC on "
        "the same folds beside it):",
        "",
        md_table(folds[keep]),
    ])


def model_card_page(settings: Settings, facts: dict[str, Any], shots: set[str]) -> str:
    card = facts["card"]
    body = card.markdown().split("\n", 1)[1]
    body = body.replace("\n## ", "\n### ")
    return (f"The card of the demo's champion, **{card.model} v{card.version}**, as "
            "`lead-scoring model-card` prints it and as it is logged to the version's run:\n"
            f"{body}\n" + _img("mlflow-artifacts.png", "The card in the run's artifacts", shots))


BUILDERS = {"deployment": deployment_page, "online-testing": online_page,
            "monitoring": monitoring_page, "retraining": retraining_page,
            "model-card": model_card_page}


def write_figures(settings: Settings, shots: set[str]) -> list[Path]:
    facts = champion_facts(settings)
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for page in PAGES:
        text = BUILDERS[page](settings, facts, shots)
        path = FIGURES_DIR / f"{page}.md"
        path.write_text(f"<!-- generated by docs/_gen/demo_figures.py from a `make demo` run; "
                        f"do not edit -->\n\n{text.strip()}\n")
        written.append(path)
    return written


# ------------------------------------------------------------------------- screenshots


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], health: str, env: dict[str, str], timeout: float = 600
           ) -> Iterator[subprocess.Popen]:
    """Start a server on loopback, wait until `health` answers 200, stop it afterwards."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=log,
                                stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"{cmd[0]} exited ({proc.returncode}):\n"
                                     f"{log.read().decode(errors='replace')[-3000:]}")
                try:
                    with urllib.request.urlopen(health, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{health} did not answer within {timeout:.0f} s")
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _new_page(browser: Any, width: int, height: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    # generous: a loaded 2-core machine takes a while to draw these UIs
    page.set_default_timeout(180_000)
    page.set_default_navigation_timeout(180_000)
    return page


def _shot(page: Any, url: str, target: Path, wait_for: str, settle_ms: int = 2500,
          full_page: bool = True) -> None:
    page.goto(url)
    page.wait_for_selector(wait_for, timeout=180_000)
    # UIs that poll (MLflow) never go network-idle: wait a little for it, then settle
    with contextlib.suppress(Exception):
        page.wait_for_load_state("networkidle", timeout=15_000)
    page.wait_for_timeout(settle_ms)
    page.screenshot(path=str(target), full_page=full_page)
    print(f"  {target.relative_to(ROOT)}")


def mlflow_shots(settings: Settings, browser: Any, facts: dict[str, Any]) -> list[str]:
    from ml.registry import mlflow_client

    client = mlflow_client(settings, create=False)
    card = facts["card"]
    experiment = client.get_run(card.run_id).info.experiment_id
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
           settings.paths.mlflow_tracking_uri, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    name = settings.registry.model_name
    with server(cmd, f"{base}/health", {}):
        page = _new_page(browser, 1400, 1000)
        run = f"{base}/#/experiments/{experiment}/runs/{card.run_id}"
        _shot(page, run, IMG_DIR / "mlflow-run.png", "text=Metrics", full_page=False)
        _shot(page, f"{run}/artifacts/model_card/model_card.md",
              IMG_DIR / "mlflow-artifacts.png", "text=model_card.md", full_page=False)
        _shot(page, f"{base}/#/models/{name}", IMG_DIR / "mlflow-registry.png",
              f"text={name}", full_page=False)
        page.close()
    return ["mlflow-run.png", "mlflow-artifacts.png", "mlflow-registry.png"]


def evidently_shot(settings: Settings, browser: Any) -> list[str]:
    from ml.dashboard import data

    reports = data.evidently_reports(settings)
    drift = reports[reports["name"] == "data_drift"]
    if drift.empty:
        raise SystemExit("no Evidently data_drift.html under the reports: run `make demo`")
    page = _new_page(browser, 1400, 1100)
    _shot(page, Path(drift["path"].iloc[0]).resolve().as_uri(),
          IMG_DIR / "evidently-data-drift.png", "body", settle_ms=4000, full_page=False)
    page.close()
    return ["evidently-data-drift.png"]


def dashboard_shots(settings: Settings, chromium: str) -> list[str]:
    """Every dashboard page through the dashboard's own screenshot script (fails on an
    exception shown on a page)."""
    from ml.dashboard.pages import PAGES as DASHBOARD_PAGES

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "dashboard" / "screenshots.py"),
             "--data-dir", str(settings.paths.data_dir), "--out", tmp, "--chromium", chromium],
            cwd=ROOT, text=True, capture_output=True)
        print(proc.stdout)
        if proc.returncode != 0:
            raise SystemExit(f"dashboard screenshots failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
        names = []
        for i, (_, path, _, _) in enumerate(DASHBOARD_PAGES):
            name = f"dashboard-{path}.png"
            shutil.copy(Path(tmp) / f"{i + 1:02d}-{path}.png", IMG_DIR / name)
            names.append(name)
    return names


SHOOTERS = ("mlflow", "evidently", "dashboard")


def take_screenshots(settings: Settings, chromium: str, only: tuple[str, ...] = SHOOTERS
                     ) -> set[str]:
    from playwright.sync_api import sync_playwright

    IMG_DIR.mkdir(parents=True, exist_ok=True)
    facts = champion_facts(settings)
    shots: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            if "mlflow" in only:
                shots += mlflow_shots(settings, browser, facts)
            if "evidently" in only:
                shots += evidently_shot(settings, browser)
        finally:
            browser.close()
    if "dashboard" in only:
        shots += dashboard_shots(settings, chromium)
    return set(shots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the finished demo's data dir (default: settings)")
    parser.add_argument("--no-screenshots", action="store_true",
                        help="only the figures; keep the pictures already in docs/")
    # the Dagster pictures (lineage, run, checks) are tests/orchestration/ui_screenshots.py's
    parser.add_argument("--only", default=",".join(SHOOTERS),
                        help=f"screenshots of these only (comma-separated: {','.join(SHOOTERS)})")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = load_settings(
        overrides={"paths.data_dir": args.data_dir} if args.data_dir else None)
    if args.no_screenshots:
        shots = {p.name for p in IMG_DIR.glob("*.png")}
    else:
        if not Path(args.chromium).is_file():
            parser.error(f"no Chromium at {args.chromium}: apt-get install chromium "
                         "(`make docs-figures` does it), or pass --chromium PATH")
        only = tuple(x.strip() for x in args.only.split(",") if x.strip())
        unknown = set(only) - set(SHOOTERS)
        if unknown:
            parser.error(f"--only: unknown {sorted(unknown)}; choose from {SHOOTERS}")
        taken = take_screenshots(settings, args.chromium, only)
        # pictures of the parts not re-shot this time stay (and stay referenced)
        shots = taken | {p.name for p in IMG_DIR.glob("*.png")}
    for path in write_figures(settings, shots):
        print(f"  {path.relative_to(ROOT)}")
    print(json.dumps({"figures": len(PAGES), "screenshots": sorted(shots)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
