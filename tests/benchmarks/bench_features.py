"""Benchmark: the feature pipeline at scale — dbt against the same SQL in raw DuckDB, the online
refresh against stock `feast materialize`, and peak memory.

Steps (all in a temporary folder unless --data-dir is given):
  1. generate N leads (default 1M; about 30 activities each);
  2. `dbt run` (the models) and `dbt test` (the data tests), timed separately;
  3. the same compiled model SQL, in dependency order, straight into a fresh DuckDB file with
     the same catalog name (`create table/view ... as <compiled sql>`);
  4. export the marts, `feast apply`, then the online refresh of every open lead's latest
     features into an empty store, the nightly refresh of the next day (the latest mart moved one
     day the way a night changes it: tests/benchmarks/bench_online_refresh.py's `next_day`), and
     stock `FeatureStore.materialize` of a sample of the same rows (stock costs minutes at 1M).
Prints seconds, ratios, leads/s and peak RSS of this process and of the dbt subprocesses.

Usage: python tests/benchmarks/bench_features.py [--leads 1000000] [--stock-sample 100000]
It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from datetime import timedelta
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_online_refresh import next_day  # noqa: E402

from ml import feature_store  # noqa: E402
from ml.config import load_settings  # noqa: E402
from ml.data.generator import generate_from_settings  # noqa: E402
from ml.online_refresh import refresh_online_store  # noqa: E402
from ml.warehouse import export_marts, run_dbt  # noqa: E402


def peak_rss_gib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return own, children


def raw_duckdb_seconds(manifest: dict, target_dir: Path, database: Path) -> float:
    """Run every model's compiled SQL, in dependency order, in a fresh DuckDB file."""
    models = {k: n for k, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    graph = {k: [d for d in n["depends_on"]["nodes"] if d in models] for k, n in models.items()}
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    # the same settings as the dbt profile, so both sides work under the same memory cap
    con = duckdb.connect(
        str(database),
        config={"memory_limit": "5GB", "preserve_insertion_order": False},
    )
    started = time.perf_counter()
    for key in TopologicalSorter(graph).static_order():
        node = models[key]
        kind = "view" if node["config"]["materialized"] == "view" else "table"
        compiled = target_dir / "compiled" / node["package_name"] / node["original_file_path"]
        con.execute(f'create or replace {kind} main."{node["name"]}" as {compiled.read_text()}')
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--stock-sample", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--reuse-data", action="store_true", help="keep the raw files there")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_features_"))
    settings = load_settings(
        overrides={"paths.data_dir": str(data_dir), "generator.n_leads": args.leads}
    )
    rows: list[tuple[str, str]] = []

    if not args.reuse_data:
        started = time.perf_counter()
        summary = generate_from_settings(settings)
        rows.append(("generate", f"{time.perf_counter() - started:.1f} s "
                     f"({summary.n_leads:,} leads, {summary.n_activities:,} activities)"))

    run = run_dbt(settings, ["run"])
    target_dir = settings.paths.warehouse.parent / "dbt_target"
    manifest = json.loads((target_dir / "manifest.json").read_text())
    test = run_dbt(settings, ["test"])
    raw_db = data_dir / "raw_duckdb" / settings.paths.warehouse.name
    raw = raw_duckdb_seconds(manifest, target_dir, raw_db)
    rows += [
        ("dbt run (models)", f"{run.seconds:.1f} s"),
        ("same SQL in raw DuckDB", f"{raw:.1f} s"),
        ("ratio dbt / raw", f"{run.seconds / raw:.2f}  (goal ≤ 1.3)"),
        ("dbt test (data + unit tests)", f"{test.seconds:.1f} s"),
        ("dbt build = run + test", f"{run.seconds + test.seconds:.1f} s"),
    ]

    export_marts(settings)
    feature_store.apply_feature_repo(settings)
    latest_path = settings.paths.marts_dir / "lead_features_latest.parquet"
    latest = pq.read_table(latest_path)
    n_open = latest.num_rows
    empty = refresh_online_store(settings)
    rows.append(("online refresh, empty store", f"{empty.seconds:.1f} s, "
                 f"{n_open / empty.seconds:,.0f} leads/s ({n_open:,} open leads)"))

    tomorrow = next_day(latest, np.random.default_rng(1), first_new=10**8)
    nightly_path = data_dir / "nightly" / "lead_features_latest.parquet"
    nightly_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tomorrow, nightly_path)
    nightly = refresh_online_store(settings, source=nightly_path)
    rows.append(("online refresh, next night", f"{nightly.seconds:.1f} s, "
                 f"{tomorrow.num_rows / nightly.seconds:,.0f} leads/s, "
                 f"{nightly.cells_written:,} cells written"))

    sample = tomorrow.slice(0, min(args.stock_sample, tomorrow.num_rows))
    stock_settings = load_settings(overrides={"paths.data_dir": str(data_dir / "stock")})
    stock_settings.paths.marts_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(sample, stock_settings.paths.marts_dir / "lead_features.parquet")
    pq.write_table(sample, stock_settings.paths.marts_dir / "lead_features_latest.parquet")
    feature_store.apply_feature_repo(stock_settings)
    end = sample.column("snapshot_ts").to_pandas().max().to_pydatetime() + timedelta(seconds=1)
    started = time.perf_counter()
    feature_store.materialize_stock(stock_settings, end)
    stock_s = time.perf_counter() - started
    stock_rate = sample.num_rows / stock_s
    rows += [
        ("stock feast materialize", f"{stock_s:.1f} s, {stock_rate:,.0f} leads/s "
         f"({sample.num_rows:,}-lead sample of the same rows)"),
        ("nightly refresh / stock", f"{tomorrow.num_rows / nightly.seconds / stock_rate:.1f}x  "
         "(goal ≥ 10x)"),
        ("empty-store refresh / stock", f"{n_open / empty.seconds / stock_rate:.1f}x"),
    ]
    own, children = peak_rss_gib()
    rows.append(("peak RSS", f"this process {own:.2f} GiB, dbt/DuckDB subprocesses {children:.2f} "
                 "GiB (goal < 8 GiB)"))
    width = max(len(k) for k, _ in rows)
    print(f"\nfeature pipeline benchmark — {args.leads:,} leads, data in {data_dir}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
