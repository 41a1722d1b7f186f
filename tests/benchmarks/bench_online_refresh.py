"""Benchmark: the online refresh (ml/online_refresh.py) against stock `feast materialize`.

Fabricates a latest-features mart with the contract's columns (docs/contracts.md) for N leads,
applies the Feast repo into two temporary data dirs, then times:
  stock     FeatureStore.materialize over the snapshot (one SQL statement per value)
  refresh   refresh_online_store into an empty store (all leads new)
  rerun     the same mart again (all leads unchanged: hashes only)
  nightly   a mart where every lead changed (upserts over existing rows)
  partial   a mart where 10% of the leads changed and 5% closed
and checks that both stores read back identical through get_online_features (a sample of leads).

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
from datetime import UTC, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "feature_repo"))
from fabricate_marts import FIRST_SNAPSHOT, lead_ids, snapshot_rows  # noqa: E402

from ml import feature_store  # noqa: E402
from ml.config import load_settings  # noqa: E402
from ml.online_refresh import refresh_online_store  # noqa: E402


def _write(marts: Path, table: pa.Table) -> None:
    marts.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, marts / "lead_features.parquet")
    pq.write_table(table, marts / "lead_features_latest.parquet")


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
        ids = lead_ids(args.leads)
        as_of = FIRST_SNAPSHOT
        day1 = snapshot_rows(ids, as_of, rng)
        _write(stock.paths.marts_dir, day1)
        _write(ours.paths.marts_dir, day1)
        feature_store.apply_feature_repo(stock)
        feature_store.apply_feature_repo(ours)
        n_features = len(feature_store.feature_names(feature_store.get_store(ours), ours))
        print(f"{args.leads:,} leads x {n_features} features ({args.leads * n_features:,} values)")

        results: dict[str, float] = {}
        if not args.skip_stock:
            started = time.perf_counter()
            feature_store.materialize_stock(stock, as_of.replace(tzinfo=UTC) + timedelta(seconds=1))
            results["stock materialize"] = time.perf_counter() - started

        first = refresh_online_store(ours)
        results["refresh (empty store)"] = first.seconds
        rerun = refresh_online_store(ours)
        results["refresh (unchanged)"] = rerun.seconds
        assert rerun.leads_written == 0, rerun

        if not args.skip_stock:
            sample = ids[:: max(1, args.leads // 2000)] + ["L-unknown"]
            a = feature_store.online_features(stock, sample)
            b = feature_store.online_features(ours, sample)
            pd.testing.assert_frame_equal(a, b)
            print(f"get_online_features identical for {len(sample):,} sampled leads")

        # Next night: every lead's snapshot moved on (new values for all of them).
        day2 = snapshot_rows(ids, as_of + timedelta(days=1), rng)
        _write(ours.paths.marts_dir, day2)
        results["refresh (all changed)"] = refresh_online_store(ours).seconds

        # Then: 10% of the leads changed, 5% closed.
        n = args.leads
        changed = snapshot_rows(ids, as_of + timedelta(days=2), rng)
        keep = pa.array(rng.random(n) >= 0.05)
        pick = pa.array(rng.random(n) < 0.10)
        mixed = pa.Table.from_arrays(
            [pc.if_else(pick, changed[c], day2[c]) for c in day2.column_names],
            names=day2.column_names,
        ).filter(keep)
        _write(ours.paths.marts_dir, mixed)
        partial = refresh_online_store(ours)
        results["refresh (10% changed, 5% closed)"] = partial.seconds
        print(
            f"  partial: {partial.leads_written:,} written, {partial.leads_unchanged:,} unchanged,"
            f" {partial.leads_deleted:,} deleted"
        )

        print(f"{'run':<34}{'seconds':>9}{'leads/s':>12}")
        for name, seconds in results.items():
            print(f"{name:<34}{seconds:>9.2f}{args.leads / seconds:>12,.0f}")
        if "stock materialize" in results:
            ratio = results["stock materialize"] / results["refresh (empty store)"]
            ratio_changed = results["stock materialize"] / results["refresh (all changed)"]
            print(
                f"speed-up vs stock: {ratio:.1f}x (empty store), {ratio_changed:.1f}x (all changed)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
