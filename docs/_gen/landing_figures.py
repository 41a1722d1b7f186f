"""The CRM-mappings page's figures and screenshots: land each shipped mapping's sample export and
photograph its landing report (`make docs-figures`, or on its own).

For each vendor (salesforce, hubspot, dynamics) it runs, in a temporary data folder,

    lead-scoring land --mapping VENDOR --sample EXPORT_DIR --json

(the sample export in the vendor's shape, with its planted faults: ml/landing/samples.py), then
opens the HTML report in headless Chromium and saves a full-page PNG to
`docs/img/landing-report-<vendor>.png`, and writes the reports' figures (rows in and out per
file, per column how many values were mapped, folded, defaulted, null or rejected) to
`docs/_gen/figures/crm-mappings.md`, which docs/crm-mappings.md includes (`<!-- figures -->`).

Chromium is Debian's (`/usr/bin/chromium`, `--no-sandbox`), driven by the `playwright` package;
it never downloads a browser. The script itself needs only the standard library and playwright
(the landing runs through the `lead-scoring` CLI), so any Python with playwright can run it:

    python docs/_gen/landing_figures.py [--cli .venv/bin/lead-scoring] [--no-screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "_gen" / "figures" / "crm-mappings.md"
IMG_DIR = ROOT / "docs" / "img"
VENDORS = ("salesforce", "hubspot", "dynamics")
OUTCOMES = ("mapped", "folded", "defaulted", "null", "rejected")
# as tests/dashboard/screenshots.py and docs/_gen/demo_figures.py launch Debian's Chromium
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def land_sample(cli: Path, vendor: str, work: Path) -> dict[str, Any]:
    """`lead-scoring land --mapping VENDOR --sample` into `work`; the report as a dict."""
    # this checkout's code, whichever checkout the command was installed from
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "LEAD_SCORING_DATA_DIR": str(work / "data"), "PYTHONPATH": path}
    for var in ("LEAD_SCORING_RAW_DIR", "LEAD_SCORING_REPORTS_DIR"):
        env.pop(var, None)
    proc = subprocess.run(
        [str(cli), "land", "--mapping", vendor, "--sample", str(work / "export"), "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    if proc.returncode:
        raise SystemExit(f"landing the {vendor} sample failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def _n(value: int) -> str:
    return f"{value:,}" if value else "·"


def vendor_figures(report: dict[str, Any], shot: str | None) -> str:
    """One vendor's section: files in and out, then the columns that needed work."""
    files = report["files"]
    lines = [
        f"### {report['vendor']}",
        "",
        "| contract file | export files | rows in | rows out | left out (why) | added |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, f in files.items():
        exports = ", ".join(Path(p).name for e in f["exports"] for p in e["files"])
        dropped = "; ".join(f"{v:,} {k}" for k, v in f["dropped"].items()) or "—"
        added = "; ".join(f"{v:,} {k}" for k, v in f["added"].items()) or "—"
        lines.append(f"| {name}.csv | {exports} | {f['rows_in']:,} | {f['rows_out']:,} | "
                     f"{dropped} | {added} |")
    lines += [
        "",
        "Values per column that were not taken as they came (columns whose every value was "
        "read as is are left out; `·` is none):",
        "",
        "| column | from | " + " | ".join(OUTCOMES) + " |",
        "|---|---|" + "---:|" * len(OUTCOMES),
    ]
    for name, f in files.items():
        for col in f["columns"].values():
            counts = col["counts"]
            if not any(counts.get(o, 0) for o in OUTCOMES):
                continue
            source = ", ".join(col["sources"]) or ("absent" if col["absent"] else "default")
            lines.append(f"| {name}.{col['column']} | {source} | "
                         + " | ".join(_n(counts.get(o, 0)) for o in OUTCOMES) + " |")
    notes = [n for f in files.values() for n in f["notes"]]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    if shot:
        lines += ["", f"![the {report['vendor']} sample's landing report](img/{shot})"
                  "{ loading=lazy }"]
    return "\n".join(lines)


def screenshot(chromium: str, reports: dict[str, Path]) -> dict[str, str]:
    """A full-page PNG of each vendor's report.html; vendor -> file name under docs/img/."""
    from playwright.sync_api import sync_playwright

    IMG_DIR.mkdir(parents=True, exist_ok=True)
    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            for vendor, html in reports.items():
                page.goto(html.as_uri())
                page.wait_for_selector("h1")
                name = f"landing-report-{vendor}.png"
                page.screenshot(path=str(IMG_DIR / name), full_page=True)
                print(f"  docs/img/{name}")
                shots[vendor] = name
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=Path, default=Path(sys.executable).parent / "lead-scoring",
                        help="the lead-scoring command (default: beside this Python)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args(argv)
    if not args.cli.is_file():
        parser.error(f"no lead-scoring command at {args.cli}; pass --cli PATH")
    if not args.no_screenshots and not Path(args.chromium).is_file():
        parser.error(f"no Chromium at {args.chromium}: apt-get install chromium, or --chromium")
    with tempfile.TemporaryDirectory(prefix="landing-figures-") as tmp:
        reports = {v: land_sample(args.cli, v, Path(tmp) / v) for v in VENDORS}
        html = {v: Path(r["report_dir"]) / "report.html" for v, r in reports.items()}
        shots = {} if args.no_screenshots else screenshot(args.chromium, html)
    if args.no_screenshots:  # keep the pictures an earlier run took
        shots = {v: f"landing-report-{v}.png" for v in VENDORS
                 if (IMG_DIR / f"landing-report-{v}.png").is_file()}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    body = [
        f"*Generated by `docs/_gen/landing_figures.py` on {stamp}: each vendor's sample export "
        "(`lead-scoring land --mapping NAME --sample DIR`, the generator's default 18,000 "
        "leads in the vendor's shape with planted faults) landed with the default settings.*",
        "",
        *(vendor_figures(reports[v], shots.get(v)) + "\n" for v in VENDORS),
    ]
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text("\n".join(body), encoding="utf-8")
    print(json.dumps({"figures": str(FIGURES.relative_to(ROOT)), "screenshots": sorted(shots)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
