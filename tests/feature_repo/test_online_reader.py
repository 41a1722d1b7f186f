"""The service's online reader returns what Feast's public API serves, on SQLite and on Redis."""

from __future__ import annotations

import math

import pyarrow.parquet as pq

from ml import feature_store
from ml.online_refresh import refresh_online_store
from ml.serving.features import OnlineFeatureReader


def test_reader_serves_what_get_online_features_serves(fresh):
    settings, info = fresh
    refresh_online_store(settings)
    ids = pq.read_table(
        settings.paths.marts_dir / "lead_features_latest.parquet", columns=["lead_id"]
    )["lead_id"].to_pylist()
    requested = [*ids, info["closed"][0], "L-unknown"]

    reader = OnlineFeatureReader(settings)
    got = reader.read(requested)
    want = feature_store.online_features(settings, requested).set_index("lead_id")

    # leads the store does not hold (closed, never seen) are None, not a row of nulls
    assert got[-2:] == [None, None]
    for lead, row in zip(ids, got[:-2], strict=True):
        assert row is not None, lead
        for name in reader.feature_names:
            expected = want.at[lead, name]
            if expected is None or (isinstance(expected, float) and math.isnan(expected)):
                assert row[name] is None, (lead, name)
            else:
                assert row[name] == expected, (lead, name)
    assert reader.ping()

    # The SQLite store is read in one statement of our own (ml/serving/features.py); Feast's
    # own per-view online_read must give the same, for a few leads at once and a lead asked
    # twice in one micro-batch.
    few = [ids[0], "L-unknown", ids[1], ids[0]]
    direct = reader.read(few)
    assert direct[0] == direct[3] and direct[1] is None
    per_view = reader._read_feast(few)
    assert per_view == direct
