"""Redis helpers of the serving benchmark (`bench_serving.py --online-store redis`): claim a
database of a shared Redis server, and time our online refresh against stock
`feast materialize` into Redis, checking that both read back identical."""

from __future__ import annotations

import atexit
import os
import time
import uuid
from urllib.parse import urlsplit

import pandas as pd
import redis

from ml import feature_store
from ml.config import Settings
from ml.online_refresh import refresh_online_store

CLAIM_KEY = "lead_scoring_test:claimed_by"  # the tests' claim (tests/conftest.py)


def _empty(client: redis.Redis) -> None:
    for key in client.scan_iter(count=10_000):
        if key != CLAIM_KEY.encode():
            client.delete(key)


def claim_redis_db(base_url: str) -> str:
    """The URL of a database (1-15) of `base_url`'s server no test or benchmark is using,
    emptied now and again at exit."""
    token = f"bench:{os.getpid()}:{uuid.uuid4().hex}"
    for db in range(1, 16):
        url = urlsplit(base_url)._replace(path=f"/{db}").geturl()
        client = redis.Redis.from_url(url)
        if client.set(CLAIM_KEY, token, nx=True, ex=6 * 3600):
            _empty(client)

            def release(client: redis.Redis = client) -> None:
                _empty(client)
                client.delete(CLAIM_KEY)

            atexit.register(release)
            return url
    raise SystemExit(f"every Redis database 1-15 of {base_url} is in use")


def _with_online_store(settings: Settings, url: str) -> Settings:
    paths = settings.paths.model_copy(update={"online_store_url": url})
    return settings.model_copy(update={"paths": paths})


def refresh_vs_stock(settings: Settings, ours_url: str, stock_url: str) -> Settings:
    """Fill `ours_url` with our refresh (full, then again unchanged) and `stock_url` with stock
    materialize of the same marts; print the times and whether both read back the same.
    Returns the settings on `ours_url`."""
    ours, stock = _with_online_store(settings, ours_url), _with_online_store(settings, stock_url)
    latest = pd.read_parquet(settings.paths.marts_dir / "lead_features_latest.parquet")
    as_of = pd.Timestamp(latest["snapshot_ts"].max()).to_pydatetime()
    rows = []
    for label in ("ours, empty Redis (every cell)", "ours, unchanged marts (diff)"):
        stats = refresh_online_store(ours)
        rows.append((label, stats.seconds, stats.leads_read, stats.cells_written))
    started = time.perf_counter()
    feature_store.materialize_stock(stock, as_of)
    rows.append(("stock feast materialize", time.perf_counter() - started, len(latest), None))

    ids = latest["lead_id"].tolist()
    same = feature_store.online_features(ours, ids).equals(
        feature_store.online_features(stock, ids)
    )
    print(f"\nonline refresh into Redis ({len(latest)} open leads; load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"{'writer':34} {'seconds':>8} {'leads/s':>9} {'cells':>9}")
    for label, seconds, leads, cells in rows:
        print(f"{label:34} {seconds:8.2f} {leads / seconds:9.0f} "
              f"{'all' if cells is None else cells:>9}")
    print(f"read back through get_online_features, ours vs stock: "
          f"{'identical' if same else 'DIFFERENT'}")
    return ours
