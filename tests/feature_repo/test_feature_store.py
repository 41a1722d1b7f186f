"""Smoke tests of the Feast repo: apply, point-in-time retrieval, stock materialize, online read."""

from __future__ import annotations

from datetime import UTC, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fabricate_marts import FEATURES, make_settings

from ml import feature_store
from ml.errors import ConfigError, DataError


def normalise(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Numbers as float (nullable ints come back as float), other values as objects, NaN as None."""
    out = {}
    for col in columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        else:
            out[col] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out).reset_index(drop=True)


def mart(settings, name: str = "lead_features") -> pd.DataFrame:
    return pq.read_table(settings.paths.marts_dir / f"{name}.parquet").to_pandas()


def test_apply_registers_the_repo_with_documented_features(applied):
    settings, _ = applied
    names = feature_store.apply_feature_repo(settings)  # a second apply is a no-op
    assert set(names) >= {
        "lead",
        "lead_features_source",
        "lead_profile",
        "lead_engagement",
        settings.features.feature_service,
    }
    store = feature_store.get_store(settings)
    assert feature_store.feature_names(store, settings) == FEATURES_IN_SERVICE_ORDER
    for view in store.list_feature_views():
        assert {"owner", "source_model"} <= set(view.tags)
        assert all(field.description for field in view.features), view.name
        assert view.ttl == timedelta(days=settings.features.snapshot_interval_days)
        # the source follows the settings' data dir, not the default one
        assert view.batch_source.path == str(settings.paths.marts_dir / "lead_features.parquet")


FEATURES_IN_SERVICE_ORDER = [
    "lead_source",
    "industry",
    "country",
    "license_type",
    "budget_band",
    "company_size",
    "visa_quota",
    "days_since_created",
    *[f for f in FEATURES if f.startswith("n_")],
    "website_visits",
    "email_opens",
    "days_since_last_activity",
    "email_click_rate_90d",
    "pricing_view_rate_90d",
    "engagement_score",
]


def test_feature_service_lists_exactly_the_contract_features(applied):
    settings, _ = applied
    store = feature_store.get_store(settings)
    assert sorted(feature_store.feature_names(store, settings)) == sorted(FEATURES)
    assert len(FEATURES) == 41


def test_historical_features_are_point_in_time(applied):
    settings, info = applied
    first, second, _ = info["snapshots"]
    open_lead, closed_lead = "L0000001", info["closed"][0]
    cases = [  # (lead, event time, snapshot whose row is expected or None)
        (open_lead, second, second),  # exactly at a snapshot
        (open_lead, second + timedelta(days=3, hours=5), second),  # between two: the earlier
        (open_lead, first - timedelta(seconds=1), None),  # before the first snapshot
        (closed_lead, first + timedelta(days=2), first),  # within one TTL of its last snapshot
        (closed_lead, second + timedelta(days=1), None),  # closed: more than one TTL later
    ]
    entity_df = pd.DataFrame(
        {
            "lead_id": [c[0] for c in cases],
            "event_timestamp": [c[1] for c in cases],
            "label": range(len(cases)),
        }
    )
    out = feature_store.historical_features(settings, entity_df)

    assert out["label"].tolist() == list(range(len(cases)))  # order kept, labels carried
    assert out["event_timestamp"].dt.tz is not None
    rows = mart(settings).set_index(["lead_id", "snapshot_ts"])
    for i, (lead, _, snapshot) in enumerate(cases):
        got = normalise(out.iloc[[i]], FEATURES)
        if snapshot is None:
            assert got.isna().all(axis=None), cases[i]
        else:
            want = normalise(rows.loc[[(lead, snapshot)]].reset_index(), FEATURES)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_historical_features_accept_tz_aware_timestamps(applied):
    settings, info = applied
    ts = info["snapshots"][1]
    naive = pd.DataFrame({"lead_id": ["L0000003"], "event_timestamp": [ts]})
    aware = naive.assign(event_timestamp=naive["event_timestamp"].dt.tz_localize(UTC))
    a = feature_store.historical_features(settings, naive)
    b = feature_store.historical_features(settings, aware)
    pd.testing.assert_frame_equal(a, b)
    assert a["engagement_score"].notna().any() or a["lead_source"].notna().any()


def test_stock_materialize_serves_the_latest_row(fresh):
    settings, info = fresh
    feature_store.materialize_stock(settings, info["as_of"])
    latest = mart(settings, "lead_features_latest")
    ids = latest["lead_id"].tolist()
    online = feature_store.online_features(settings, [*ids, "L-unknown"])
    assert online["lead_id"].tolist() == [*ids, "L-unknown"]
    pd.testing.assert_frame_equal(
        normalise(online.iloc[:-1], FEATURES), normalise(latest, FEATURES), check_dtype=False
    )
    assert normalise(online.iloc[[-1]], FEATURES).isna().all(axis=None)


def test_errors_name_the_fix(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(ConfigError, match="features apply"):
        feature_store.feature_names(feature_store.get_store(settings), settings)
    with pytest.raises(DataError, match="dbt build"):
        feature_store.historical_features(
            settings, pd.DataFrame({"lead_id": ["L1"], "event_timestamp": [pd.Timestamp(0)]})
        )
