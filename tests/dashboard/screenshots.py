"""Screenshot every dashboard page in a real headless Chromium (`make screenshots`).

Starts the dashboard on loopback, opens each page, waits for Streamlit to finish the run,
saves a full-page PNG per page and exits 1 if any page shows an exception. Drives the system
Chromium (`apt-get install chromium`) through the optional `playwright` package; it never
downloads a browser. Not a test: pytest does not collect it.

    python tests/dashboard/screenshots.py                 # the stores of the settings (make demo)
    python tests/dashboard/screenshots.py --fabricate     # a small filled state (state.py)
    python tests/dashboard/screenshots.py --readme docs/dashboard.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from ml.config import load_settings  # noqa: E402
from ml.dashboard.pages import PAGES  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the dashboard exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the dashboard did not answer on {url} within {timeout:.0f} s")


def _settle(page, timeout_ms: int = 240_000) -> None:  # noqa: ANN001
    """Wait until the page's title is drawn and Streamlit's run has finished."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    # The status widget shows while the script runs; charts draw after it.
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')""", timeout=timeout_ms
    )
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
    page.wait_for_timeout(1500)  # Vega draws its canvases after the data arrive


def shoot(url: str, out_dir: Path, chromium: str, readme: Path | None) -> int:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for i, (title, path, _, _) in enumerate(PAGES):
            page.goto(f"{url}/{'' if i == 0 else path}")
            _settle(page)
            exceptions = page.locator('[data-testid="stException"]').count()
            target = out_dir / f"{i + 1:02d}-{path}.png"
            # The main area scrolls inside its own container: grow the window to fit it.
            height = page.evaluate(
                """() => document.querySelector('[data-testid="stMainBlockContainer"]')
                .scrollHeight"""
            )
            page.set_viewport_size({"width": 1400, "height": max(900, int(height) + 120)})
            page.wait_for_timeout(1500)
            page.screenshot(path=str(target))
            page.set_viewport_size({"width": 1400, "height": 900})
            print(
                f"{title:<26} {'OK ' if not exceptions else 'EXCEPTION'} "
                f"({exceptions} exception(s)) -> {target}"
            )
            failures += exceptions > 0
            if i == 0 and readme is not None:
                readme.parent.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1200, "height": 760})
                _settle(page)
                page.screenshot(path=str(readme))
                page.set_viewport_size({"width": 1400, "height": 900})
                print(f"README picture -> {readme}")
        browser.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the stores to show (default: the settings')")
    parser.add_argument(
        "--fabricate",
        action="store_true",
        help="show a small filled state built by tests/dashboard/state.py",
    )
    parser.add_argument("--out", type=Path, help="PNG folder (default <data_dir>/screenshots)")
    parser.add_argument("--readme", type=Path, help="also save the Overview here (small PNG)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        # `make screenshots` installs Debian's chromium first; a direct run may lack it.
        parser.error(
            f"no Chromium at {args.chromium}: `make screenshots` installs Debian's `chromium` "
            "(or: apt-get install chromium; or pass --chromium PATH)"
        )

    data_dir = args.data_dir
    if args.fabricate:
        from state import build_state

        data_dir = tempfile.mkdtemp(prefix="dashboard-state-")
        build_state(Path(data_dir))
    settings = load_settings(overrides={"paths.data_dir": data_dir} if data_dir else None)
    out = args.out or settings.paths.data_dir / "screenshots"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LEAD_SCORING_DATA_DIR": str(settings.paths.data_dir)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "ml" / "dashboard" / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "viewer",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_healthy(url, server)
        failures = shoot(url, out, args.chromium, args.readme)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    if failures:
        print(f"{failures} page(s) showed an exception")
        return 1
    print(f"{len(PAGES)} pages, no exception (data: {settings.paths.data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
