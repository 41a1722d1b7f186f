"""Screenshots of the Dagster UI after `make demo` (`make dagster-screenshot`).

Starts `dg dev` on loopback over the instance the demo recorded into (`paths.dagster_home`),
waits until the code location has loaded, then saves three PNGs with a real headless Chromium:
the demo's run (steps, materializations, check results), the challenger's asset page (backtest
AUC, version, report links) and the scores' asset checks. Drives the system Chromium
(`apt-get install chromium`) through the optional `playwright` package; it never downloads a
browser. Not a test: pytest does not collect it.

    python tests/orchestration/ui_screenshots.py                   # into docs/img/
    python tests/orchestration/ui_screenshots.py --out /tmp/shots --dagster-home /tmp/x/dagster
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from ml.config import load_settings  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
LOCATION_QUERY = (
    '{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus '
    'locationOrLoadError { __typename } } } } }"}'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loaded(url: str) -> bool:
    """True once the webserver answers and every code location has loaded (an error raises)."""
    request = urllib.request.Request(
        f"{url}/graphql", data=LOCATION_QUERY.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    for entry in entries:
        kind = (entry.get("locationOrLoadError") or {}).get("__typename")
        if kind == "PythonError":
            raise SystemExit(f"code location {entry['name']} failed to load: see `make dagster`")
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def _wait_loaded(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dg dev exited with status {server.returncode}")
        try:
            if _loaded(url):
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"the Dagster UI did not load the code location within {timeout:.0f} s")


def _latest_run_id(home: Path) -> str:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(limit=1)
    if not runs:
        raise SystemExit(f"no run recorded in {home}: run `make demo` first")
    return runs[0].run_id


def _wait_finished(home: Path, run_id: str, timeout: float) -> None:
    """Wait until the run has finished (the UI shows a finished run's full timeline)."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            if instance.get_run_by_id(run_id).is_finished:
                return
            time.sleep(5)
    raise SystemExit(f"run {run_id} did not finish within {timeout:.0f} s")


def shoot(url: str, run_id: str, out_dir: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = [
        ("dagster_run.png", f"/runs/{run_id}", "text=crm_lead_scores"),
        ("dagster_challenger_model.png", "/assets/challenger_model", "text=backtest_auc_mean"),
        (
            "dagster_score_checks.png",
            "/assets/crm_lead_scores?view=checks",
            "text=one_score_per_open_lead",
        ),
    ]
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        for name, path, ready in pages:
            page.goto(url + path, wait_until="domcontentloaded", timeout=120_000)
            try:
                page.wait_for_selector(ready, timeout=120_000)
            except Exception as exc:  # noqa: BLE001 - the picture is still worth looking at
                print(f"{path}: {ready!r} not shown ({type(exc).__name__}); saved as it is")
            page.wait_for_load_state("networkidle", timeout=120_000)
            # a fresh browser profile gets Dagster's "join the community" dialog: skip it
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()
            page.wait_for_timeout(2000)  # the run's Gantt chart and counts draw after the data
            target = out_dir / name
            page.screenshot(path=str(target))
            saved.append(target)
            print(f"saved {target}")
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for dg dev")
    parser.add_argument(
        "--dagster-home",
        type=Path,
        help="the instance to show (default the settings' paths.dagster_home, where the demo "
        "records)",
    )
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    home = args.dagster_home or load_settings().paths.dagster_home
    run_id = _latest_run_id(home)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # a SIGTERM still stops dg dev (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dg"),
                "dev",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_loaded(url, server, args.timeout)
            _wait_finished(home, run_id, args.timeout)
            shoot(url, run_id, args.out, chromium)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
