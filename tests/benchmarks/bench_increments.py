"""Nightly increment against a full rebuild: land (merge) an export of 1 % new leads and 3 % new
activities into the raw files (leads and conversions upserted, activities appended as a part
file: ml/landing/merge.py) and build the warehouse incrementally, then rebuild everything from
scratch on the same files, and print both (and whether their marts are equal).

    .venv/bin/python tests/benchmarks/bench_increments.py --leads 1000000   # 30M activities
    .venv/bin/python tests/benchmarks/bench_increments.py --leads 100000 --keep /tmp/inc

The CRM's history comes from the generator (`--leads`, 540 days, about 30 activities per lead).
The increment holds the newest 1 % of leads, the activities and conversions since last night's
export, and late arrivals (older activities the CRM synced late) making up 3 % of the activities;
last night's warehouse is built from the rest first (not timed). Timings depend
on the machine's load: the script prints `uptime` before and after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ml.config import Settings, load_settings  # noqa: E402
from ml.contract import RAW_COLUMNS  # noqa: E402
from ml.data.generator import generate  # noqa: E402
from ml.landing.merge import merge_into_raw  # noqa: E402
from ml.warehouse import build_warehouse  # noqa: E402

NEW_LEADS = 0.01
NEW_ACTIVITIES = 0.03


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _split(source: Path, base: Path, con: duckdb.DuckDBPyConnection) -> tuple[dict, datetime]:
    """Write last night's raw files to `base`; return tonight's increment frames and last
    night's as-of (midnight before the oldest non-late row of the increment)."""
    base.mkdir(parents=True)

    def read(name: str) -> str:
        spec = ", ".join(f"'{c}': 'VARCHAR'" for c in RAW_COLUMNS[name])
        return f"read_csv('{source / name}.csv', header=true, columns={{{spec}}})"

    n_leads = con.execute(f"select count(*) from {read('leads')}").fetchone()[0]
    n_acts = con.execute(f"select count(*) from {read('activities')}").fetchone()[0]
    cut_lead = con.execute(
        f"select created_at from {read('leads')} order by created_at desc "
        f"limit 1 offset {int(n_leads * NEW_LEADS)}"
    ).fetchone()[0]
    # last night's as-of: midnight after the newest lead it still held
    prev = (pd.Timestamp(cut_lead).tz_localize(None).normalize() + timedelta(days=1))
    prev_s = prev.strftime("%Y-%m-%dT%H:%M:%SZ")
    n_new_acts = con.execute(
        f"select count(*) from {read('activities')} where occurred_at >= '{prev_s}'"
    ).fetchone()[0]
    # the rest of the 3 % are activities the CRM synced late (stamped before last night)
    late_n = max(0, int(n_acts * NEW_ACTIVITIES) - n_new_acts)
    con.execute(
        f"""create or replace table late as select activity_id from {read('activities')}
        where occurred_at < '{prev_s}' using sample reservoir({late_n} rows) repeatable (7)"""
    )
    inc = {
        "leads": f"select * from {read('leads')} where created_at >= '{prev_s}'",
        "activities": f"select * from {read('activities')} where occurred_at >= '{prev_s}' "
        "or activity_id in (select activity_id from late)",
        "conversions": f"select * from {read('conversions')} where converted_at >= '{prev_s}'",
    }
    frames = {name: con.execute(sql).df() for name, sql in inc.items()}
    for name in RAW_COLUMNS:
        cols = ", ".join(RAW_COLUMNS[name])
        if name in inc:
            keep = f"select {cols} from {read(name)} except all {inc[name]}"
        else:
            keep = f"select {cols} from {read(name)}"
        con.execute(f"copy ({keep}) to '{base / name}.csv' (header, delimiter ',')")
    return frames, prev.to_pydatetime()


def _model_seconds(settings: Settings) -> dict[str, float]:
    results = settings.paths.warehouse.parent / "dbt_target" / "run_results.json"
    rows = json.loads(results.read_text())["results"]
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in rows
            if r["unique_id"].startswith("model.")}


def _marts_equal(a: Settings, b: Settings) -> bool:
    con = duckdb.connect()
    for mart in ("lead_features", "lead_labels"):
        pa, pb = (s.paths.marts_dir / f"{mart}.parquet" for s in (a, b))
        diff = con.execute(
            f"select (select count(*) from (select * from '{pa}' except all select * from '{pb}'))"
            f" + (select count(*) from (select * from '{pb}' except all select * from '{pa}'))"
        ).fetchone()[0]
        if diff:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-increments-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# nightly increment vs full rebuild, {args.leads:,} leads ({work})")
    print(f"load before: {_uptime()}")
    source = work / "source"
    if not (source / "leads.csv").is_file():
        t = time.perf_counter()
        generate(source, work / "truth", n_leads=args.leads, days=args.days)
        print(f"generated in {time.perf_counter() - t:.0f}s")
    con = duckdb.connect()
    nightly = load_settings(overrides={"paths.data_dir": str(work / "nightly")})
    full = load_settings(overrides={"paths.data_dir": str(work / "full")})
    for s in (nightly, full):
        shutil.rmtree(s.paths.data_dir, ignore_errors=True)
    frames, prev_as_of = _split(source, nightly.paths.raw_dir, con)
    end = load_settings().generator.end_date  # the generator's default: data ends there
    tonight = datetime(end.year, end.month, end.day)
    t = time.perf_counter()
    build_warehouse(nightly, as_of=prev_as_of)
    print(f"last night's warehouse (not timed in the table): {time.perf_counter() - t:.0f}s")

    t = time.perf_counter()
    merged = merge_into_raw(frames, nightly.paths.raw_dir)
    merge_s = time.perf_counter() - t
    t = time.perf_counter()
    inc = build_warehouse(nightly, as_of=tonight)
    inc_s, inc_models = time.perf_counter() - t, _model_seconds(nightly)

    shutil.copytree(nightly.paths.raw_dir, full.paths.raw_dir)
    t = time.perf_counter()
    build_warehouse(full, as_of=tonight, full_refresh=True)
    full_s, full_models = time.perf_counter() - t, _model_seconds(full)
    print(f"load after: {_uptime()}")

    raw_acts = inc.raw_rows["activities"]
    print(f"\nincrement: {merged['leads'].added:,} new leads of {merged['leads'].after:,}, "
          f"{merged['activities'].added:,} new activities of {raw_acts:,} "
          f"({merged['activities'].added / raw_acts:.1%}; appended as "
          f"{merged['activities'].part}), {merged['conversions'].added:,} conversions; "
          f"as-of {prev_as_of} -> {tonight}")
    print("\n| step | full rebuild (s) | nightly increment (s) | increment / full |")
    print("|---|---:|---:|---:|")
    print(f"| land: merge the increment into the raw files | — | {merge_s:.1f} | — |")
    for model in sorted(full_models, key=lambda m: -full_models[m])[:8]:
        f, i = full_models[model], inc_models.get(model, 0.0)
        print(f"| dbt model {model} | {f:.1f} | {i:.1f} | {i / f:.2f} |")
    print(f"| dbt build + export (models and tests) | {full_s:.1f} | {inc_s:.1f} | "
          f"{inc_s / full_s:.2f} |")
    print(f"| total | {full_s:.1f} | {merge_s + inc_s:.1f} | {(merge_s + inc_s) / full_s:.2f} |")
    print(f"\nincremental marts equal the full rebuild's: {_marts_equal(nightly, full)}"
          f" ({inc.mart_rows['lead_features']:,} lead_features rows)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
