"""The case-study pages' scenarios, performed for real on a copy of a finished `make demo`
(`make docs-scenarios`).

The demo runs the pipeline once; the pages also need what happens *after* it. This script copies
the demo's data dir to a scratch dir (the demo's own stores are never written: the script checks
that no file of it changed) and there, with the project's own CLI and Dagster definitions:

1. **drift** (monitoring page): regenerates the same CRM with two drifts from 2026-09-01
   (`lead-scoring generate --drift ...`), rebuilds, refreshes the features, scores and monitors,
   and reads the drift figures and the alerts that run raised;
2. **sensor** (retraining page): evaluates the drift sensor through Dagster's
   `build_sensor_context` on the copied instance, executes the RunRequest it returns as a run of
   `weekly_retrain` in that instance with the sensor's tags and run key (what the daemon does),
   and evaluates the sensor again (it skips: one condition, one run);
3. **deploy** (deployment page): starts `lead-scoring serve`, moves `@champion` with the CLI
   (`rollback`) and shows `GET /model` before and after the service's hot reload, and the alias
   history;
4. **online** (online-testing page): serves the open leads' real requests in canary mode (and
   shows the guard's verdict in `GET /model`), then trains a challenger that is worse for real
   (`lead-scoring train` with three one-split trees) and serves the same canary, whose guard
   trips; then runs an A/B test to a verdict: the generator writes a CRM whose history runs
   `label_window_days + 1` days past today, the landing zone gets it as it stood at midnight
   (`cut_raw`), which is built and served in A/B mode; then the whole export is landed and
   built, and `ab-report` runs as of its end (the prediction log stamps requests with the wall
   clock, so the labels must mature after today).

Each writes `docs/_gen/figures/<page>-scenario.md`, which the docs hook puts where the page says
`<!-- scenario -->`. With `--screenshots`, Debian's Chromium (driven by playwright) also shoots the
drifted run's Evidently report and the Dagster run page of the sensor-started run.

    python docs/_gen/scenarios.py --data-dir /tmp/demo            # a finished `make demo`
    python docs/_gen/scenarios.py --data-dir data --work /tmp/scn --keep --only drift,sensor
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from demo_figures import _free_port, md_table, server  # noqa: E402

from ml.config import DEFAULT_CONFIG, Settings, load_settings  # noqa: E402

FIGURES_DIR = ROOT / "docs" / "_gen" / "figures"
IMG_DIR = ROOT / "docs" / "case-study" / "img"
SCENARIOS = ("drift", "sensor", "deploy", "online")
PAGE_OF = {"drift": "monitoring", "sensor": "retraining", "deploy": "deployment",
           "online": "online-testing"}
# A new lead source takes off (Event leads x3) and a marketing-automation change doubles every
# lead's activity, both from 2026-09-01: two months of the open leads' four.
DRIFTS = ("lead_source_mix:Event:2026-09-01:3", "engagement_level::2026-09-01:2")
# the MLflow tables whose rows hold an artefact path (the copy's must point into the copy)
MLFLOW_PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                       ("model_versions", "source"), ("model_versions", "storage_location"),
                       ("logged_models", "artifact_location"))


class ScenarioError(RuntimeError):
    """A scenario could not be performed (the message names the step and what it printed)."""


# ------------------------------------------------------------------------- the scratch copy


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under root (to prove the demo was not written)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def copy_demo(demo: Path, work: Path) -> None:
    """Copy the demo's data dir to `work` and point the copied MLflow store's artefact paths
    into the copy (they are absolute, and a new run logged under the demo's would write there)."""
    db = demo / "mlflow" / "mlflow.db"
    if not db.is_file():
        raise ScenarioError(f"{db} not found: --data-dir must be a finished `make demo`'s data "
                            "dir with the embedded MLflow store (a server store cannot be copied)")
    if not (demo / "dagster").is_dir():
        raise ScenarioError(f"{demo / 'dagster'} not found: the demo records its run there")
    if work.exists() and any(work.iterdir()):
        raise ScenarioError(f"{work} exists and is not empty: give a new --work folder")
    if work.exists():
        work.rmdir()
    shutil.copytree(demo, work, symlinks=True)
    con = sqlite3.connect(work / "mlflow" / "mlflow.db")
    try:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        for table, column in MLFLOW_PATH_COLUMNS:
            if table in tables:
                con.execute(f"update {table} set {column} = replace({column}, ?, ?) "  # noqa: S608
                            f"where {column} like ?", (str(demo), str(work), f"%{demo}%"))
        con.commit()
    finally:
        con.close()


@dataclass
class Scratch:
    """The copied data dir, a settings file for it, and every command run there."""

    demo: Path
    work: Path
    config: Path
    commands: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        # PYTHONPATH: this checkout's packages, whichever checkout the venv installed editable
        return {**os.environ, "PYTHONPATH": str(ROOT), "LEAD_SCORING_DATA_DIR": str(self.work),
                "LEAD_SCORING_CONFIG": str(self.config),
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

    def settings(self) -> Settings:
        return load_settings(self.config, overrides={"paths.data_dir": str(self.work)})

    def write_config(self, training: dict[str, Any] | None = None, **serving: Any) -> None:
        """The project's settings file with `serving` keys changed (mode, poll interval) and
        `training` keys replaced (the families a challenger is trained with)."""
        tree = yaml.safe_load(DEFAULT_CONFIG.read_text())
        tree["training"].update(training or {})
        for key, value in serving.items():
            node = tree["serving"]
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        self.config.write_text(yaml.safe_dump(tree, sort_keys=False))

    def cli(self, *args: str, parse_json: bool = True) -> Any:
        """Run `lead-scoring ARGS` on the copy; its JSON (or text) output."""
        exe = Path(sys.executable).parent / "lead-scoring"
        shown = "lead-scoring " + shlex.join(args)
        self.commands.append(shown)
        print(f"  $ {shown}", flush=True)
        proc = subprocess.run([str(exe), *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True)
        if proc.returncode != 0:
            raise ScenarioError(f"`{shown}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                                f"{proc.stderr[-3000:]}")
        if not parse_json:
            return proc.stdout
        start = min((i for i in (proc.stdout.find("{"), proc.stdout.find("[")) if i >= 0),
                    default=-1)
        if start < 0:
            raise ScenarioError(f"`{shown}` printed no JSON:\n{proc.stdout[-2000:]}")
        return json.loads(proc.stdout[start:])


def history_table(settings: Settings) -> pd.DataFrame:
    """The alias history (`lead-scoring history`), versions as integers."""
    from ml.registry import alias_history

    history = alias_history(settings).drop(columns=["id"], errors="ignore")
    for col in ("from_version", "to_version"):
        history[col] = pd.Series([None if pd.isna(v) else int(v)
                                  for v in pd.to_numeric(history[col], errors="coerce")],
                                 index=history.index, dtype=object)
    return history


def fenced(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def commands_block(commands: list[str]) -> str:
    return fenced("\n".join(commands), "bash")


# ------------------------------------------------------------------------- 1. drift


def drift_scenario(s: Scratch, shots: bool) -> str:
    from ml.dashboard import data
    from ml.monitoring.store import read_metrics

    # the demo's figures, read from the copy: opening the demo's SQLite store would write it
    # (closing the last connection removes a WAL file the demo left)
    before = read_metrics(s.settings(), scope="data_drift")
    before_alerts = data.alerts(s.settings())
    last_alert = int(before_alerts["id"].max()) if not before_alerts.empty else 0
    start = len(s.commands)
    gen = s.cli("generate", *[a for d in DRIFTS for a in ("--drift", d)], "--json")
    s.cli("build", "--json")
    s.cli("features", "apply", "--json")
    s.cli("features", "refresh", "--json")
    scored = s.cli("score", "--json")
    mon = s.cli("monitor", "--json")
    settings = s.settings()
    after = read_metrics(settings, scope="data_drift")
    run_id = after["run_id"].iloc[-1]
    now = after[(after["run_id"] == run_id) & (after["metric"] == "psi")]
    was = before[(before["run_id"] == before["run_id"].iloc[-1]) & (before["metric"] == "psi")]
    table = now[["feature", "value", "threshold", "status"]].merge(
        was[["feature", "value"]].rename(columns={"value": "demo PSI"}), on="feature", how="left")
    table = table.rename(columns={"value": "drifted PSI"})[
        ["feature", "demo PSI", "drifted PSI", "threshold", "status"]]
    table = table.sort_values("drifted PSI", ascending=False)
    pred = read_metrics(settings, scope="prediction_drift")
    pred = pred[pred["run_id"] == pred["run_id"].iloc[-1]] if not pred.empty else pred
    alerts = data.alerts(settings)
    raised = alerts[alerts["id"] > last_alert].sort_values("id")
    over = int((table["status"] != "ok").sum())
    lines = [
        f"Made by `docs/_gen/scenarios.py` (scenario `drift`) on a copy of the demo's data dir: "
        f"the same CRM regenerated ({gen['leads']:,} leads, {gen['period']}) with two drifts "
        f"from 2026-09-01, Event leads three times as common and every lead's activity doubled, "
        f"then rebuilt, rescored ({scored['rows']:,} open leads) and monitored "
        f"with the project's CLI:",
        "",
        commands_block(s.commands[start:]),
        "",
        f"**Data drift** of monitoring run **{run_id}**: {over} of {len(table)} feature "
        f"measurements over their threshold (the demo's PSI beside it, same features). The "
        f"fifteen largest:",
        "",
        md_table(table.head(15)),
        "",
    ]
    if not pred.empty:
        lines += ["**Prediction drift** of the same run:", "",
                  md_table(pred[["metric", "feature", "value", "threshold", "status"]]), ""]
    lines += [f"`monitor` sums it up (max PSI {mon['max_psi']}, score PSI "
              f"{mon['prediction_psi']}):", "", f"> {mon['drift_verdict']}", ""]
    lines += ["**The alerts it raised** (new rows of the `alert_log` table; Slack, e-mail and "
              "PagerDuty are skipped without their secrets, the JSON-lines file always "
              "receives them):", ""]
    lines += [md_table(raised[["rule", "severity", "channel", "status", "title"]])
              if not raised.empty else "_(none)_", ""]
    if shots:
        lines += [shoot_evidently(settings)]
    return "\n".join(lines)


def shoot_evidently(settings: Settings) -> str:
    from ml.dashboard import data

    reports = data.evidently_reports(settings)
    drift = reports[reports["name"] == "data_drift"]
    if drift.empty:
        raise ScenarioError("the drifted run wrote no Evidently data_drift.html")
    screenshot(Path(drift["path"].iloc[0]).resolve().as_uri(), IMG_DIR / "evidently-drifted.png",
               "body", 1400, 1100)
    caption = "Evidently data-drift report of the drifted run"
    return f"![{caption}](img/evidently-drifted.png)\n\n*{caption}*\n"


# The browser part runs in BROWSER_PYTHON (any interpreter with playwright; default this one),
# so the project's venv needs no playwright: `--browser-python /tmp/shots/bin/python`.
SHOT = """
import sys
from playwright.sync_api import sync_playwright
url, out, wait_text, width, height, chromium, *args = sys.argv[1:]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=args)
    page = browser.new_page(viewport={"width": int(width), "height": int(height)})
    page.set_default_timeout(180_000)
    page.goto(url)
    for text in wait_text.split("|"):
        if text == "body":
            page.wait_for_selector("body")
        else:
            page.get_by_text(text).first.wait_for()
    page.wait_for_timeout(4000)
    skip = page.get_by_role("button", name="Skip")  # Dagster's newsletter prompt
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(500)
    page.screenshot(path=out)
    browser.close()
"""


def screenshot(url: str, out: Path, wait_text: str, width: int, height: int) -> None:
    """A PNG of `url` in headless Chromium once every `|`-separated text is shown."""
    from demo_figures import CHROMIUM_ARGS

    proc = subprocess.run([BROWSER_PYTHON, "-c", SHOT, url, str(out), wait_text, str(width),
                           str(height), CHROMIUM, *CHROMIUM_ARGS], text=True,
                          capture_output=True)
    if proc.returncode != 0:
        raise ScenarioError(f"screenshot of {url} failed:\n{proc.stderr[-3000:]}")
    print(f"  {out.relative_to(ROOT)}")


# ------------------------------------------------------------------------- 2. sensor


def sensor_scenario(s: Scratch, shots: bool) -> str:
    import dagster as dg

    from ml.registry import alias_history
    from orchestration.definitions import build_definitions
    from orchestration.demo import persistent_instance
    from orchestration.resources import SettingsResource
    from orchestration.sensors import (
        drift_retrain_sensor,
        new_labels_retrain_sensor,
        performance_retrain_sensor,
    )

    settings = s.settings()
    resource = SettingsResource(config_path=str(s.config), data_dir=str(s.work))
    defs = build_definitions(data_dir=str(s.work), config_path=str(s.config))
    history_before = len(alias_history(settings))
    rows = []
    with persistent_instance(settings.paths.dagster_home) as instance:
        request, cursor = None, None
        for name, sensor in (("drift_retrain_sensor", drift_retrain_sensor),
                             ("performance_retrain_sensor", performance_retrain_sensor),
                             ("new_labels_retrain_sensor", new_labels_retrain_sensor)):
            ctx = dg.build_sensor_context(instance=instance, sensor_name=name,
                                          resources={"settings": resource})
            out = sensor(ctx)
            if isinstance(out, dg.SensorResult) and out.run_requests:
                req = out.run_requests[0]
                rows.append({"sensor": name, "result": "RunRequest", "run key": req.run_key,
                             "tags / reason": json.dumps(req.tags)})
                if name == "drift_retrain_sensor":
                    request, cursor = req, out.cursor
            else:
                reason = out.skip_message if isinstance(out, dg.SkipReason) else str(out)
                rows.append({"sensor": name, "result": "skip", "run key": "—",
                             "tags / reason": reason})
        if request is None:
            raise ScenarioError("the drift sensor did not fire on the drifted run:\n"
                                + md_table(pd.DataFrame(rows)))
        job = defs.resolve_job_def("weekly_retrain")
        tags = {**request.tags, "dagster/sensor_name": "drift_retrain_sensor",
                "dagster/run_key": request.run_key}
        started = time.monotonic()
        result = job.execute_in_process(run_config=request.run_config, instance=instance,
                                        tags=tags, raise_on_error=False)
        seconds = time.monotonic() - started
        run = instance.get_run_by_id(result.run_id)
        again = drift_retrain_sensor(dg.build_sensor_context(
            instance=instance, sensor_name="drift_retrain_sensor", cursor=cursor,
            resources={"settings": resource}))
        mats = run_materializations(instance, result.run_id)
        run_tags = {k: v for k, v in run.tags.items() if not k.startswith(".dagster")}
    history = history_table(settings).iloc[history_before:]
    again_text = again.skip_message if isinstance(again, dg.SkipReason) else repr(again)
    lines = [
        "Made by `docs/_gen/scenarios.py` (scenario `sensor`, after `drift`): the three retraining "
        "sensors evaluated once through Dagster's `build_sensor_context` on the copied demo's "
        "instance, right after the drifted monitoring run:",
        "",
        md_table(pd.DataFrame(rows)),
        "",
        f"The drift sensor's RunRequest was executed as a run of `weekly_retrain` in that "
        f"instance, with the request's run config and tags plus the `dagster/sensor_name` and "
        f"`dagster/run_key` tags the daemon adds (`execute_in_process`, in-process executor): "
        f"run `{result.run_id}`, **{run.status.value}** in {seconds:.0f} s "
        f"(load {os.getloadavg()[0]:.1f}). Its tags:",
        "",
        md_table(pd.DataFrame(sorted(run_tags.items()), columns=["tag", "value"])),
        "",
        "What each asset of the run recorded (first metadata entries):",
        "",
        md_table(pd.DataFrame(mats)),
        "",
        "The alias moves the run made (`lead-scoring history`):",
        "",
        md_table(history),
        "",
        f"Evaluated again with the cursor the first evaluation returned, the drift sensor skips: "
        f"*{again_text}*",
        "",
    ]
    if shots:
        lines += [shoot_dagster_run(s, result.run_id)]
    return "\n".join(lines)


def run_materializations(instance: Any, run_id: str) -> list[dict[str, str]]:
    """Each asset the run materialized, with its scalar metadata (no paths, no tables)."""
    import dagster as dg

    rows = []
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = event.asset_materialization
        shown = []
        for key, entry in mat.metadata.items():
            value = getattr(entry, "value", entry)
            text = str(value)
            skip = text.startswith(("/", "sqlite:", "{")) or "\n" in text
            if skip or isinstance(value, dict | list):
                continue
            shown.append(f"{key}: {text}")
        rows.append({"asset": mat.asset_key.to_user_string(), "metadata": "; ".join(shown)})
    return rows


def shoot_dagster_run(s: Scratch, run_id: str) -> str:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "dagster-webserver"), "-m",
           "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)]
    env = {**s.env, "DAGSTER_HOME": str(s.work / "dagster"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    with server(cmd, f"{base}/server_info", env):
        screenshot(f"{base}/runs/{run_id}", IMG_DIR / "dagster-sensor-run.png",
                   "weekly_retrain|champion_model|RUN_SUCCESS", 1600, 1000)
    caption = "Dagster: the `weekly_retrain` run the drift sensor started"
    return f"![{caption}](img/dagster-sensor-run.png)\n\n*{caption}*\n"


# ------------------------------------------------------------------------- service helpers


def http(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def serve(s: Scratch) -> tuple[Any, str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "lead-scoring"
    cmd = [str(exe), "serve", "--port", str(port)]
    return server(cmd, f"{base}/ready", {k: v for k, v in s.env.items()}), base


def model_row(when: str, body: dict) -> dict[str, Any]:
    def ver(m: dict | None) -> str:
        return "—" if not m else f"v{m.get('version')}"
    canary = body.get("canary") or {}
    return {"when": when, "mode": body["mode"], "champion": ver(body.get("champion")),
            "challenger": ver(body.get("challenger")),
            "challenger share": body.get("challenger_share"), "swaps": body.get("swaps"),
            "canary": "; ".join(f"{k}: {_short(v)}" for k, v in canary.items()) or "—"}


def _short(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v


def wait_for(base: str, check: Callable[[dict], bool], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _, body = http(base, "GET", "/model")
        if check(body):
            return body
        if time.monotonic() > deadline:
            raise ScenarioError(f"GET /model did not change within {timeout:.0f} s: {body}")
        time.sleep(0.5)


# ------------------------------------------------------------------------- 3. deploy


def deploy_scenario(s: Scratch, shots: bool) -> str:
    from ml.registry import CHALLENGER, CHAMPION, alias_history, current_version

    settings = s.settings()
    champion, challenger = current_version(settings, CHAMPION), current_version(settings,
                                                                               CHALLENGER)
    if champion is None:
        raise ScenarioError("no @champion in the copy")
    history_before = len(alias_history(settings))
    s.write_config(mode="shadow", poll_interval_seconds=1)
    start = len(s.commands)
    s.commands.append(f"lead-scoring serve   # serving.poll_interval_seconds: 1 "
                      f"(@champion v{champion})")
    rows = []
    ctx, base = serve(s)
    with ctx:
        _, body = http(base, "GET", "/model")
        rows.append(model_row("before", body))
        previous = [r for r in alias_history(settings).itertuples()
                    if r.alias == CHAMPION and r.to_version is not None]
        if len(previous) >= 2:
            why = "docs scenario: back to the champion before the drift retrain"
            decision = s.cli("rollback", "--reason", why, "--json")
        else:
            if challenger is None or challenger == champion:
                raise ScenarioError("nothing to roll back to and no other challenger to promote")
            decision = s.cli("promote", "--version", str(challenger), "--reason",
                             "docs scenario: promote the challenger", "--json")
        target = decision.get("version")
        body = wait_for(base, lambda b: str((b.get("champion") or {}).get("version"))
                        == str(target))
        rows.append(model_row(f"after `{s.commands[-1].split()[1]}` (hot reload)", body))
    history = history_table(settings)
    s.cli("history", parse_json=False)
    moves = history.iloc[history_before:]
    return "\n".join([
        "Made by `docs/_gen/scenarios.py` (scenario `deploy`, after `sensor`) on the copied "
        "demo: the service started, `@champion` moved with the CLI while it ran, and `GET "
        "/model` asked before and after (the service polls the registry every "
        "`serving.poll_interval_seconds`; 1 s here, 30 s by default):",
        "",
        commands_block(s.commands[start:]),
        "",
        f"The decision: *{decision.get('message', '')}*",
        "",
        "`GET /model`:",
        "",
        md_table(pd.DataFrame(rows)),
        "",
        "The alias history afterwards (`lead-scoring history`; the last rows are this "
        "scenario's):",
        "",
        md_table(history),
        "",
        f"{len(moves)} move(s) made by the scenario.",
    ])


# ------------------------------------------------------------------------- the CRM as of a day


def cut_raw(export: Path, raw_dir: Path, day: date) -> dict[str, int]:
    """Write into `raw_dir` what the CRM export in `export` held at midnight starting `day`:
    the leads created before it with their attributes as they were then (a correction made
    later is undone: the field takes the `old_value` of its first change at or after `day`), and
    the activities, conversions and attribute changes stamped before it. Rows per file."""
    import duckdb

    from ml import contract

    cut = f"{day.isoformat()}T00:00:00Z"  # the raw contract's ISO-8601 UTC text sorts as time
    stamp = {"leads": "created_at", "activities": "occurred_at", "conversions": "converted_at",
             "lead_attribute_changes": "changed_at"}
    contract.remove_raw_parts(raw_dir)
    counts = {}
    with duckdb.connect() as con:
        def read(name: str) -> str:
            spec = ", ".join(f"'{c}': 'VARCHAR'" for c in contract.RAW_COLUMNS[name])
            return (f"read_csv('{export / name}.csv', header=true, columns={{{spec}}}, "
                    "all_varchar=true)")

        con.execute(f"""create table later as
            select lead_id, field, arg_min(old_value, changed_at) as was
            from {read('lead_attribute_changes')} where changed_at >= '{cut}' group by all""")
        for name, column in stamp.items():
            if not (export / f"{name}.csv").is_file():
                continue
            cols = list(contract.RAW_COLUMNS[name])
            if name == "leads":
                cols = [c if c not in contract.ATTRIBUTE_FIELDS else
                        f"coalesce((select was from later where later.lead_id = t.lead_id "
                        f"and later.field = '{c}'), t.{c}) as {c}" for c in cols]
            sql = (f"select {', '.join(cols)} from {read(name)} t where {column} < '{cut}' "
                   f"order by {column}")
            out = raw_dir / f"{name}.csv"
            con.execute(f"copy ({sql}) to '{out}' (header, delimiter ',')")
            counts[name] = con.execute(f"select count(*) from read_csv('{out}')").fetchone()[0]
    return counts


# ------------------------------------------------------------------------- 4. online


def send_traffic(base: str, leads: pd.DataFrame) -> dict[str, Any]:
    codes, variants, latencies = [], [], []
    for lead in leads.itertuples():
        started = time.perf_counter()
        code, body = http(base, "POST", "/predict", {"lead_id": lead.lead_id})
        latencies.append((time.perf_counter() - started) * 1000)
        codes.append(code)
        variants.append((body or {}).get("variant") if code == 200 else None)
    series = pd.Series(variants)
    return {"requests": len(codes), "ok": sum(c == 200 for c in codes),
            "by variant": ", ".join(f"{k}: {v}" for k, v in series.value_counts().items()),
            "p50 ms": f"{pd.Series(latencies).median():.1f}"}


# A challenger that is worse for real: trained and registered by `lead-scoring train`, with
# XGBoost as the only family and cut to three one-split trees (three questions about a lead)
WORSE_CHALLENGER = {"families": ["xgboost"],
                    "xgboost": {**yaml.safe_load(DEFAULT_CONFIG.read_text())["training"]["xgboost"],
                                "n_estimators": 3, "max_depth": 1}}


def online_run(s: Scratch, i: int, label: str, leads: pd.DataFrame,
               **serving: Any) -> dict[str, Any]:
    """`lead-scoring serve` with these serving settings, every lead requested once by id; the
    traffic's figures and `GET /model` afterwards. Each run logs to its own prediction log."""
    log_url = f"sqlite:///{s.work}/serving/online-{i}-{serving['mode']}.db"
    s.write_config(poll_interval_seconds=1, prediction_log_url=log_url, **serving)
    shown = ", ".join(f"serving.{k}: {v}" for k, v in serving.items())
    s.commands.append(f"lead-scoring serve   # {shown}; then POST /predict for each open lead")
    ctx, base = serve(s)
    with ctx:
        traffic = send_traffic(base, leads)
        _, body = http(base, "GET", "/model")
    row = model_row(label, body)
    return {"run": label, **traffic, "challenger share after": f"{row['challenger share']:g}",
            "GET /model: canary": row["canary"]}


def online_scenario(s: Scratch, shots: bool) -> str:
    from ml.registry import CHALLENGER, CHAMPION, current_version

    settings = s.settings()
    champion = current_version(settings, CHAMPION)
    challenger = current_version(settings, CHALLENGER)
    leads = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet",
                            columns=["lead_id"])
    start = len(s.commands)
    results = [online_run(s, 0, f"canary, challenger v{challenger}", leads, mode="canary")]
    # a worse challenger, trained the project's way; then the same canary
    s.write_config(training=WORSE_CHALLENGER)
    s.commands.append("# training.families: [xgboost], training.xgboost: n_estimators 3, "
                      "max_depth 1")
    trained = s.cli("train", "--json")
    worse = trained["model_version"]
    results.append(online_run(s, 1, f"canary, challenger v{worse} (3 stumps)", leads,
                              mode="canary"))
    bt = trained["backtest"]
    lines = [
        "Made by `docs/_gen/scenarios.py` (scenario `online`, after `deploy`) on the copied demo, "
        f"`@champion` v{champion}. Every open lead ({len(leads):,}) is requested once by id over "
        f"HTTP with `serving.mode: canary` and the settings' guard: first with `@challenger` "
        f"v{challenger} (the drift sensor's retrain), then with a challenger that is worse for "
        f"real: `lead-scoring train` with XGBoost as the only family, cut to three one-split "
        f"trees (`n_estimators: 3`, `max_depth: 1`), registered as `@challenger` "
        f"v{worse} like any other (backtest AUC {bt['auc_mean']:.3f}, 95 % interval "
        f"{bt['auc_ci95'][0]:.3f}–{bt['auc_ci95'][1]:.3f}; its request model "
        f"{bt['request_model']['auc_mean']:.3f}):",
        "",
        commands_block(s.commands[start:]),
        "",
        md_table(pd.DataFrame(results)),
        "",
        "The guard sees no labels (they mature 60 days later): what it compares is the "
        "challenger's error rate, p95 latency and the distribution of its scores against the "
        "champion's on the same traffic mix (PSI). Three stumps give a handful of distinct "
        "scores, far from the champion's; that distribution is what trips it, and from then "
        "on every lead of the canary share is answered by the champion (`challenger share "
        "after` 0). The registry is not touched: the rollback is the service's.",
        "",
    ]
    lines += ab_matured(s, worse)
    return "\n".join(lines)


def ab_matured(s: Scratch, worse: int) -> list[str]:
    """An A/B test whose labels have matured: the CRM as of today served, then its next
    `label_window_days + 1` days landed and `ab-report` run as of their end (module doc)."""
    from ml import contract
    from ml.registry import CHALLENGER, CHAMPION, current_version

    settings = s.settings()
    window = settings.features.label_window_days
    today = datetime.now(UTC).date()  # the prediction log stamps requests with the wall clock
    later = today + timedelta(days=window + 1)
    start = len(s.commands)
    gen = s.cli("generate", "--end-date", later.isoformat(), "--json")
    export = s.work / f"crm-export-{later.isoformat()}"
    export.mkdir(exist_ok=True)
    for name in contract.RAW_COLUMNS:
        if (settings.paths.raw_dir / f"{name}.csv").is_file():
            shutil.move(settings.paths.raw_dir / f"{name}.csv", export / f"{name}.csv")
    counts = cut_raw(export, settings.paths.raw_dir, today)
    s.commands.append(f"# data/raw := that export as it stood at {today} 00:00 UTC "
                      "(docs/_gen/scenarios.py: cut_raw)")
    # the build's point in time pinned (rows stamped after it are rejected as future ones)
    s.cli("build", "--as-of", today.isoformat(), "--json")
    s.cli("features", "apply", "--json")
    s.cli("features", "refresh", "--json")
    leads = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet",
                            columns=["lead_id"])
    champion = current_version(settings, CHAMPION)
    challenger = current_version(settings, CHALLENGER)
    traffic = online_run(s, 2, "ab", leads, mode="ab")
    s.commands.append(f"# {window + 1} days later: data/raw := the whole export to {later}")
    for name in contract.RAW_COLUMNS:
        if (export / f"{name}.csv").is_file():
            shutil.copy2(export / f"{name}.csv", settings.paths.raw_dir / f"{name}.csv")
    s.cli("build", "--as-of", later.isoformat(), "--json")
    report = s.cli("ab-report", "--as-of", later.isoformat(), "--json")
    text = s.cli("ab-report", "--as-of", later.isoformat(), parse_json=False)
    variants = pd.DataFrame([
        {"variant": v["variant"], "versions": ", ".join(f"v{x}" for x in v["model_versions"]),
         "matured leads": v["leads"], "converted": v["conversions"],
         "conversion rate": None if v["conversion_rate"] is None
         else f"{v['conversion_rate']:.4f}",
         "AUC of the served score": None if v["auc"] is None else
         f"{v['auc']:.3f} [{v['auc_ci'][0]:.3f}, {v['auc_ci'][1]:.3f}]"}
        for v in report["variants"].values()])
    needed = report["needed_per_variant"]
    needed_text = (f"To detect a {report['min_effect']:+.2f} difference in conversion rate at "
                   f"alpha {report['alpha']} and the settings' power the test needs "
                   f"{needed:,} matured leads per variant." if needed is not None else
                   "No conversion rate to size the test from.")
    return [
        "### An A/B test whose labels matured",
        "",
        f"`ab-report` counts a lead once its 60-day label has matured *after the request*, "
        f"and the service stamps each request with the wall clock ({today} when this ran), "
        f"while the demo's CRM ends on {settings.generator.end_date}. So the same scenario then "
        f"lets time pass for "
        f"real: the generator (same seed and size) writes the CRM's history up to {later} "
        f"({gen['leads']:,} leads); the landing zone gets that export as it stood at {today} "
        f"00:00 UTC (only rows stamped before it; an attribute corrected later keeps its value "
        f"of then: {counts['leads']:,} leads, {counts['activities']:,} activities, "
        f"{counts['conversions']:,} conversions), which is built, refreshed and served in A/B "
        f"mode, `@champion` v{champion} against `@challenger` v{challenger} (the three stumps); "
        f"then the rest of the export ({window + 1} days of activities and conversions, drawn "
        f"by the generator from each lead's true probability; nobody wrote a label) is landed "
        f"and built, and `ab-report` runs as of {later}:",
        "",
        commands_block(s.commands[start:]),
        "",
        md_table(pd.DataFrame([traffic]).drop(columns=["GET /model: canary"])),
        "",
        fenced(text),
        "",
        md_table(variants),
        "",
        f"**{report['verdict']}** — {report['leads_matured']:,} of {report['leads_logged']:,} "
        f"leads matured (a lead that converted between midnight and its request is left out). "
        f"{needed_text}",
        "",
        "What this shows, and what it cannot: in a generated CRM the score a lead was served "
        "changes nothing about whether it converts (the generator drew that from the lead "
        "alone), so the conversion rates of the two variants can only differ by chance; the "
        "test's verdict above is the answer to *that* null. Where the variants differ is the "
        "AUC of the score each served (with its 95 % interval, above): how well it ranked the "
        "leads that then converted. "
        "In a real CRM, where salespeople act on the score, the conversion rate is the "
        "figure that decides, and it needs the sample size above.",
        "",
    ]


# ------------------------------------------------------------------------- main

BUILDERS: dict[str, Callable[[Scratch, bool], str]] = {
    "drift": drift_scenario, "sensor": sensor_scenario, "deploy": deploy_scenario,
    "online": online_scenario}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_PYTHON = sys.executable


def main(argv: list[str] | None = None) -> int:
    global CHROMIUM, BROWSER_PYTHON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a finished `make demo`'s data dir")
    parser.add_argument("--work", help="the scratch copy (a new folder; default a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"these scenarios, in order (comma-separated: {','.join(SCENARIOS)}; "
                             "each needs the ones before it)")
    parser.add_argument("--screenshots", action="store_true",
                        help="also the Evidently report and the Dagster run page (Chromium)")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--browser-python", default=BROWSER_PYTHON,
                        help="a Python with playwright for the screenshots (default this one)")
    parser.add_argument("--resume", action="store_true",
                        help="--work is a copy kept (--keep) by a run of the scenarios before "
                             "--only's first: run only --only there")
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {SCENARIOS}")
    needed = SCENARIOS[: max(SCENARIOS.index(x) for x in only) + 1]
    if args.resume:
        if not (args.work and Path(args.work, "mlflow").is_dir()):
            parser.error("--resume needs --work: a copy kept by an earlier run")
        needed = tuple(x for x in SCENARIOS if x in only)
        args.keep = True
    CHROMIUM = args.chromium
    BROWSER_PYTHON = args.browser_python
    if args.screenshots and not Path(CHROMIUM).is_file():
        parser.error(f"no Chromium at {CHROMIUM}: apt-get install chromium, or --chromium PATH")
    demo = Path(args.data_dir).resolve()
    if not demo.is_dir():
        parser.error(f"--data-dir {demo} is not a folder")
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="scenarios-"))
    before = snapshot(demo)
    if not args.resume:
        copy_demo(demo, work)
    s = Scratch(demo=demo, work=work, config=work / "scenario_config.yaml")
    s.write_config()
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    print(f"scenarios on {work} (a copy of {demo})")
    try:
        for name in needed:
            t0 = time.monotonic()
            print(f"{name}:", flush=True)
            text = BUILDERS[name](s, args.screenshots)
            print(f"  {time.monotonic() - t0:.0f} s", flush=True)
            if name not in only:
                continue
            path = FIGURES_DIR / f"{PAGE_OF[name]}-scenario.md"
            stamp = datetime.now(UTC).strftime("%Y-%m-%d")
            path.write_text(f"<!-- generated by docs/_gen/scenarios.py ({name}) on {stamp}; "
                            f"do not edit -->\n\n{text.strip()}\n")
            print(f"  {path.relative_to(ROOT)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        after = snapshot(demo)
        if after != before:
            changed = sorted(k for k in before.keys() | after.keys()
                             if before.get(k) != after.get(k))
            raise ScenarioError(f"files under the demo's {demo} changed ({', '.join(changed[:5])}"
                                "): the scenarios must only write into their copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
