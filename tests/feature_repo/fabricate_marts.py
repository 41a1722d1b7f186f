"""Fabricated `lead_features` marts with the contract's columns and types (docs/contracts.md).

The Feast layer is tested on these until the generator and dbt build small marts quickly; the
values are random but cover what the encodings must get right: nulls, zeros, negative-free ints,
floats, strings (incl. non-ASCII and `&`), and leads that close between snapshots.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ml import contract
from ml.config import Settings, load_settings

ACTIVITY_TYPES = contract.ACTIVITY_TYPES  # bench_online_refresh.py imports it from here

STRINGS = {
    "lead_source": list(contract.LEAD_SOURCES),
    # a few values each, with "&" and non-ASCII to exercise the encodings
    "industry": ["Trading", "Consulting", "Food & beverage", "Real estate", "Technology"],
    "country": ["United Arab Emirates", "India", "Côte d'Ivoire", "Germany", "Brazil"],
    "license_type": list(contract.LICENSE_TYPES),
    "budget_band": list(contract.BUDGET_BANDS),
}
DOUBLE_COLUMNS = [
    "days_since_last_activity",
    "email_click_rate_90d",
    "pricing_view_rate_90d",
    "engagement_score",
]
INT_COLUMNS = [c for c in contract.NUMERIC_FEATURES if c not in DOUBLE_COLUMNS]
FEATURES = list(contract.FEATURES)
FIRST_SNAPSHOT = datetime(2026, 9, 7)  # a Monday, 00:00 UTC


def lead_ids(n: int) -> list[str]:
    return [f"L{i:07d}" for i in range(n)]


def snapshot_rows(
    ids: list[str], snapshot_ts: datetime, rng: np.random.Generator, tz_aware: bool = False
) -> pa.Table:
    """One contract row per lead at one snapshot instant, random values."""
    n = len(ids)
    cols: dict[str, pa.Array] = {"lead_id": pa.array(ids, pa.string())}
    ts_type = pa.timestamp("us", tz="UTC") if tz_aware else pa.timestamp("us")
    cols["snapshot_ts"] = pa.array([snapshot_ts] * n, ts_type)
    for name, choices in STRINGS.items():
        values = rng.choice(choices, n)
        mask = rng.random(n) < 0.05  # dirty CRM data: some nulls
        cols[name] = pa.array(values.tolist(), pa.string(), mask=mask)
    for name in INT_COLUMNS:
        cols[name] = pa.array(rng.poisson(3.0, n).astype(np.int32), pa.int32())
    for name in DOUBLE_COLUMNS:
        values = rng.random(n) * (100.0 if name == "engagement_score" else 1.0)
        values[rng.random(n) < 0.1] = 0.0
        mask = rng.random(n) < 0.2
        cols[name] = pa.array(values, pa.float64(), mask=mask)
    return pa.table(cols)


def write_marts(
    marts_dir: Path,
    n_leads: int = 200,
    n_snapshots: int = 3,
    seed: int = 7,
    tz_aware: bool = False,
) -> dict[str, object]:
    """Write lead_features.parquet (weekly snapshots) and lead_features_latest.parquet.

    Every 10th lead closes after the first snapshot (it has one row only and is not in latest).
    The latest snapshot is the as-of instant. Returns the snapshot instants and the as-of.
    """
    rng = np.random.default_rng(seed)
    ids = lead_ids(n_leads)
    closed = set(ids[::10])
    snapshots = [FIRST_SNAPSHOT + timedelta(days=7 * k) for k in range(n_snapshots)]
    tables = []
    for k, ts in enumerate(snapshots):
        open_ids = ids if k == 0 else [i for i in ids if i not in closed]
        tables.append(snapshot_rows(open_ids, ts, rng, tz_aware))
    marts_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), marts_dir / "lead_features.parquet")
    pq.write_table(tables[-1], marts_dir / "lead_features_latest.parquet")
    return {"snapshots": snapshots, "as_of": snapshots[-1], "closed": sorted(closed)}


def make_settings(data_dir: Path, online_store_url: str | None = None) -> Settings:
    """Settings whose generated files all live under `data_dir` (the online store too, unless
    `online_store_url` names another, e.g. a Redis database)."""
    overrides = {"paths.data_dir": str(data_dir)}
    if online_store_url:
        overrides["paths.online_store_url"] = online_store_url
    return load_settings(overrides=overrides)
