"""Benchmark: the nightly cell-level online refresh (ml/online_refresh.py) against stock Feast.

Fabricates day D's latest features for N leads with the contract's columns (docs/contracts.md),
then derives day D+1 the way a night changes the data:
  - every lead's days_since_created +1; days_since_last_activity +1 for leads without activity;
  - ~15% of the leads have new activity: several activity counts (7/30/90-day windows and
    totals) go up, days_since_last_activity drops below 1, rates and engagement_score move;
  - for idle leads, some 7/30/90-day counts fall as old activity leaves the window;
  - ~1.5% of the leads close (leave the mart), ~1.5% new leads arrive.
Times:
  stock      FeatureStore.materialize of the D+1 rows into a fresh store (one statement a value)
  empty      refresh_online_store of day D into an empty store (every cell written)
  nightly    refresh_online_store from D to D+1 (only changed cells, new and closed leads)
  unchanged  the same D+1 mart again
  fallback   refresh_online_store(full=True) of D+1 over the existing store
and checks that stock and refreshed stores read back identical through get_online_features.

Usage: python tests/benchmarks/bench_online_refresh.py [--leads 100000] [--skip-stock]
Prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "feature_repo"))
from fabricate_marts import (  # noqa: E402
    ACTIVITY_TYPES,
    FIRST_SNAPSHOT,
    lead_ids,
    snapshot_rows,
)

from ml import feature_store  # noqa: E402
from ml.config import load_settings  # noqa: E402
from ml.online_refresh import refresh_online_store  # noqa: E402


def _write(marts: Path, table: pa.Table) -> None:
    marts.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, marts / "lead_features.parquet")
    pq.write_table(table, marts / "lead_features_latest.parquet")


def next_day(
    day: pa.Table, rng: np.random.Generator, first_new: int, active_share: float = 0.15
) -> pa.Table:
    """Day D+1 from day D: the changes of one night (see the module docstring)."""
    n = day.num_rows
    as_of = pc.max(day["snapshot_ts"]).as_py() + timedelta(days=1)
    active = rng.random(n) < active_share
    cols = {c: day[c].to_numpy(zero_copy_only=False).copy() for c in day.column_names}
    cols["days_since_created"] += 1
    idle_since = cols["days_since_last_activity"]  # NaN: never active
    cols["days_since_last_activity"] = np.where(active, rng.random(n) * 0.9, idle_since + 1.0)
    for activity in ACTIVITY_TYPES:
        hit = active & (rng.random(n) < 0.3)
        more = rng.integers(1, 4, n) * hit
        for window in (7, 30, 90):
            name = f"n_{activity}_{window}d"
            counts = cols[name] + more
            # idle leads: an old event leaves the window now and then
            leaves = (
                ~active & (counts > 0) & (rng.random(n) < {7: 0.05, 30: 0.02, 90: 0.01}[window])
            )
            cols[name] = (counts - leaves).astype(np.int32)
        total = {"website_visit": "website_visits", "email_open": "email_opens"}.get(activity)
        if total:
            cols[total] = (cols[total] + more).astype(np.int32)
    for name, scale in (
        ("email_click_rate_90d", 1.0),
        ("pricing_view_rate_90d", 1.0),
        ("engagement_score", 100.0),
    ):
        cols[name] = np.where(active, rng.random(n) * scale, cols[name])
    cols["snapshot_ts"] = np.full(n, as_of, dtype="datetime64[us]")
    moved = pa.table(
        {c: pa.array(v, day.schema.field(c).type, from_pandas=True) for c, v in cols.items()}
    )
    stays = rng.random(n) >= 0.015
    n_new = max(1, round(n * 0.015))
    new_ids = [f"L{i:07d}" for i in range(first_new, first_new + n_new)]
    arrivals = snapshot_rows(new_ids, as_of, rng)
    zero = pa.array(np.zeros(n_new, np.int32))
    arrivals = arrivals.set_column(
        arrivals.column_names.index("days_since_created"), "days_since_created", zero
    )
    return pa.concat_tables([moved.filter(pa.array(stays)), arrivals.select(day.column_names)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--skip-stock", action="store_true", help="time only the refresh")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    root = Path(tempfile.mkdtemp(prefix="bench_online_refresh_"))
    try:
        stock = load_settings(overrides={"paths.data_dir": str(root / "stock")})
        ours = load_settings(overrides={"paths.data_dir": str(root / "ours")})
        rng = np.random.default_rng(1)
        day = snapshot_rows(lead_ids(args.leads), FIRST_SNAPSHOT, rng)
        night = next_day(day, rng, first_new=args.leads)
        as_of: datetime = pc.max(night["snapshot_ts"]).as_py()

        _write(ours.paths.marts_dir, day)
        feature_store.apply_feature_repo(ours)
        n_features = len(feature_store.feature_names(feature_store.get_store(ours), ours))
        print(
            f"day D: {day.num_rows:,} leads x {n_features} features; day D+1: {night.num_rows:,} "
            f"leads ({night.num_rows * n_features:,} cells)"
        )
        runs: dict[str, tuple[int, float]] = {}
        empty = refresh_online_store(ours)
        runs["refresh D, empty store (all cells)"] = (empty.leads_read, empty.seconds)

        _write(ours.paths.marts_dir, night)
        nightly = refresh_online_store(ours)
        runs["refresh D -> D+1 (changed cells)"] = (nightly.leads_read, nightly.seconds)
        assert nightly.full_rewrite is None, nightly
        print(
            f"night D -> D+1: {nightly.cells_written:,} of {night.num_rows * n_features:,} cells "
            f"written ({nightly.cells_written / (night.num_rows * n_features):.1%}), "
            f"{nightly.leads_written:,} leads touched, {nightly.leads_deleted:,} closed deleted"
        )
        rerun = refresh_online_store(ours)
        runs["refresh D+1 again (unchanged)"] = (rerun.leads_read, rerun.seconds)
        assert rerun.cells_written == 0, rerun

        if not args.skip_stock:
            _write(stock.paths.marts_dir, night)
            feature_store.apply_feature_repo(stock)
            started = time.perf_counter()
            feature_store.materialize_stock(stock, as_of.replace(tzinfo=UTC) + timedelta(seconds=1))
            runs["stock materialize D+1 (fresh store)"] = (
                night.num_rows,
                time.perf_counter() - started,
            )
            ids = night["lead_id"].to_pylist()
            closed = sorted(set(day["lead_id"].to_pylist()) - set(ids))
            sample = ids[:: max(1, len(ids) // 3000)] + ids[-50:] + closed[:20] + ["L-unknown"]
            a = feature_store.online_features(stock, sample)
            b = feature_store.online_features(ours, sample)
            # stock cannot delete, but its fresh store never held the closed leads either
            pd.testing.assert_frame_equal(a, b)
            print(f"get_online_features identical for {len(sample):,} sampled leads")

        fallback = refresh_online_store(ours, full=True)
        runs["refresh D+1, full=True (fallback)"] = (fallback.leads_read, fallback.seconds)

        print(f"\n{'run':<40}{'leads':>9}{'seconds':>9}{'leads/s':>11}{'vs stock':>10}")
        stock_rate = None
        if "stock materialize D+1 (fresh store)" in runs:
            n, s = runs["stock materialize D+1 (fresh store)"]
            stock_rate = n / s
        for name, (n, seconds) in runs.items():
            rate = n / seconds
            ratio = f"{rate / stock_rate:.1f}x" if stock_rate else "-"
            print(f"{name:<40}{n:>9,}{seconds:>9.2f}{rate:>11,.0f}{ratio:>10}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
