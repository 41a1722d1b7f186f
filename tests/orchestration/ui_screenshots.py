"""Screenshots of the Dagster UI after `make demo` (`make dagster-screenshot`).

Starts the Dagster webserver (`dagster-webserver -m orchestration.definitions`: the UI `dg dev`
serves, without the daemon a picture does not need) on loopback over the instance the demo
recorded into (`paths.dagster_home`),
waits until the code location has loaded, then saves PNGs with a real headless Chromium: the
global asset lineage twice (every group expanded: raw files, dbt models, marts export, Feast,
training, scoring, monitoring; and the same graph with each group collapsed to one node), the
demo's run (steps, materializations, check results), the challenger's asset page (backtest AUC,
version, report links) and the scores' asset checks. Drives the system Chromium
(`apt-get install chromium`) through the optional `playwright` package; it never downloads a
browser. Not a test: pytest does not collect it.

    python tests/orchestration/ui_screenshots.py                   # into docs/img/
    python tests/orchestration/ui_screenshots.py --out /tmp/shots --dagster-home /tmp/x/dagster
    python tests/orchestration/ui_screenshots.py --only lineage   # the lineage pictures only
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
from typing import Any

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
            raise SystemExit(f"the webserver exited with status {server.returncode}")
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


def _graph_clip(page: Any) -> dict[str, float]:
    """The lineage's canvas: right of the explorer panel, below the asset search box."""
    box = page.get_by_text("Search and filter assets").first.bounding_box()
    size = page.viewport_size
    x, y = box["x"] - 40, box["y"] + box["height"] + 40
    return {"x": x, "y": y, "width": size["width"] - x, "height": size["height"] - y}


def shoot_lineage(browser: Any, url: str, out_dir: Path) -> list[Path]:
    """The global asset lineage, every group expanded, then every group collapsed.

    The graph fits itself to the canvas only when it is first drawn, and the UI keeps the
    groups' expansion and the navigation's visibility in the browser's local storage: so the
    page is set up (navigation hidden, groups toggled with the graph's own ⌥E shortcut) and then
    reloaded, and the picture waits for the assets' names, not a spinner. Drawn at twice the
    pixel density, so the node names stay legible when the page shrinks the picture.
    """
    page = browser.new_page(viewport={"width": 2000, "height": 1250}, device_scale_factor=2)
    page.set_default_timeout(120_000)
    page.goto(url + "/asset-groups", wait_until="domcontentloaded")
    page.get_by_text("Global asset lineage").first.wait_for()
    page.get_by_text("monitoring", exact=True).first.wait_for()
    page.wait_for_timeout(2000)
    skip = page.get_by_role("button", name="Skip")  # the "join the community" dialog
    if skip.count():
        skip.first.click()
    hide = page.get_by_text("Hide navigation")
    if hide.count() and hide.first.is_visible():
        hide.first.click()
    saved = []
    # the collapsed graph is one row: a lower window gives it the same width, less blank
    for name, expanded, height in (("dagster_lineage.png", True, 1250),
                                   ("dagster_lineage_groups.png", False, 560)):
        node = page.get_by_text("challenger_model", exact=True)
        if (node.count() > 0) != expanded:
            page.get_by_text("Global asset lineage").first.click()  # focus, not a node
            page.keyboard.press("Alt+e")  # expand / collapse all groups
            page.wait_for_timeout(1000)
        page.set_viewport_size({"width": 2000, "height": height})
        page.reload(wait_until="domcontentloaded")
        page.get_by_text("Global asset lineage").first.wait_for()
        if expanded:
            for asset in ("leads", "lead_features", "training_set", "challenger_model",
                          "crm_lead_scores", "drift_report"):
                page.get_by_text(asset, exact=True).first.wait_for()
        else:
            page.get_by_text("scoring", exact=True).last.wait_for()
            if page.get_by_text("challenger_model", exact=True).count():
                raise SystemExit("the lineage's groups did not collapse (⌥E)")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(3000)  # the edges and the fit animate after the nodes
        target = out_dir / name
        page.screenshot(path=str(target), clip=_graph_clip(page))
        saved.append(target)
        print(f"saved {target}")
    page.close()
    return saved


PAGES = ("lineage", "run", "challenger", "checks")


def shoot(url: str, run_id: str, out_dir: Path, chromium: str,
          only: tuple[str, ...] = PAGES) -> list[Path]:
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
    pages = [page for page, kind in zip(pages, PAGES[1:], strict=True) if kind in only]
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        if "lineage" in only:
            saved += shoot_lineage(browser, url, out_dir)
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
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds to wait for the webserver")
    parser.add_argument(
        "--dagster-home",
        type=Path,
        help="the instance to show (default the settings' paths.dagster_home, where the demo "
        "records)",
    )
    parser.add_argument("--only", default=",".join(PAGES),
                        help=f"these pictures only (comma-separated: {','.join(PAGES)})")
    args = parser.parse_args(argv)
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    if set(only) - set(PAGES):
        parser.error(f"--only: unknown {sorted(set(only) - set(PAGES))}; choose from {PAGES}")
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
    # a SIGTERM still stops the webserver (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                "-m",
                "orchestration.definitions",
                "-h",
                "127.0.0.1",
                "-p",
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
            shoot(url, run_id, args.out, chromium, only)
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
