"""The fast online refresh writes what stock `feast materialize` writes, and only what changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import make_settings
from fabricate_marts import write_marts
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.types import Float64, Int32, Int64, String

from ml import feature_store
from ml.errors import ConfigError, DataError
from ml.online_refresh import encode_column, entity_keys, refresh_online_store

TABLES = ("lead_scoring_lead_profile", "lead_scoring_lead_engagement")


def table_rows(settings, table: str) -> list[tuple]:
    with sqlite3.connect(settings.paths.feast_dir / "online_store.db") as conn:
        return conn.execute(
            f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts, "
            f"vector_value FROM {table} ORDER BY entity_key, feature_name"
        ).fetchall()


def latest_ids(settings) -> list[str]:
    path = settings.paths.marts_dir / "lead_features_latest.parquet"
    return pq.read_table(path, columns=["lead_id"])["lead_id"].to_pylist()


def rewrite_latest(settings, change) -> None:
    path = settings.paths.marts_dir / "lead_features_latest.parquet"
    pq.write_table(change(pq.read_table(path)), path)


@pytest.mark.parametrize("tz_aware", [False, True], ids=["naive-ts", "utc-ts"])
def test_refresh_reads_back_identical_to_stock_materialize(tmp_path: Path, tz_aware: bool):
    stock, ours = make_settings(tmp_path / "stock"), make_settings(tmp_path / "ours")
    info = write_marts(stock.paths.marts_dir, tz_aware=tz_aware)
    write_marts(ours.paths.marts_dir, tz_aware=tz_aware)
    feature_store.apply_feature_repo(stock)
    feature_store.apply_feature_repo(ours)

    feature_store.materialize_stock(stock, info["as_of"])
    stats = refresh_online_store(ours)

    ids = latest_ids(ours)
    assert stats.leads_read == stats.leads_written == len(ids)
    # every lead incl. nulls, ints, floats, strings; plus leads the store does not hold
    requested = [*ids, *info["closed"][:3], "L-unknown"]
    a = feature_store.online_features(stock, requested)
    b = feature_store.online_features(ours, requested)
    pd.testing.assert_frame_equal(a, b)
    assert b.isna().any().any() and b.notna().any().any()
    # and byte for byte the same SQLite rows (entity keys, ValueProtos, value_text, event_ts)
    for table in TABLES:
        assert table_rows(stock, table) == table_rows(ours, table)


def test_second_refresh_of_unchanged_data_writes_nothing(fresh):
    settings, _ = fresh
    first = refresh_online_store(settings)
    before = [table_rows(settings, t) for t in TABLES]
    second = refresh_online_store(settings)
    assert first.leads_written == first.leads_read > 0
    assert (second.leads_written, second.rows_written) == (0, 0)
    assert second.leads_unchanged == second.leads_read
    assert [table_rows(settings, t) for t in TABLES] == before


def test_a_changed_lead_is_rewritten_and_a_closed_lead_deleted(fresh):
    settings, _ = fresh
    refresh_online_store(settings)
    changed, closed = "L0000001", "L0000002"

    def change(table: pa.Table) -> pa.Table:
        table = table.filter(pc.not_equal(table["lead_id"], closed))
        score = table["engagement_score"].to_numpy(zero_copy_only=False).copy()
        score[table["lead_id"].to_pylist().index(changed)] = 99.5
        idx = table.column_names.index("engagement_score")
        return table.set_column(idx, "engagement_score", pa.array(score, pa.float64()))

    rewrite_latest(settings, change)
    stats = refresh_online_store(settings)
    assert (stats.leads_written, stats.leads_deleted) == (1, 1)
    online = feature_store.online_features(settings, [changed, closed]).set_index("lead_id")
    assert online.loc[changed, "engagement_score"] == 99.5
    assert online.loc[closed].isna().all()


def test_refresh_records_the_materialization_in_the_registry(fresh):
    settings, info = fresh
    refresh_online_store(settings)
    store = feature_store.get_store(settings)
    for view in store.list_feature_views():
        assert view.most_recent_end_time.replace(tzinfo=None) == info["as_of"]


def test_refresh_refuses_without_apply_or_with_an_empty_mart(tmp_path: Path):
    settings = make_settings(tmp_path)
    write_marts(settings.paths.marts_dir)
    with pytest.raises((ConfigError, DataError), match="features apply"):
        refresh_online_store(settings)
    feature_store.apply_feature_repo(settings)
    rewrite_latest(settings, lambda t: t.slice(0, 0))
    with pytest.raises(DataError, match="no leads"):
        refresh_online_store(settings)


def test_entity_keys_match_feast():
    ids = ["L0000001", "Lé-ü", "", "L" * 300]
    want = [
        serialize_entity_key(
            EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=i)]), 3
        )
        for i in ids
    ]
    assert entity_keys(ids, 3) == want


@pytest.mark.parametrize(
    ("values", "arrow_type", "dtype"),
    [
        ([0, 1, -1, 2**31 - 1, None, 300], pa.int32(), Int32),
        ([0, -(2**40), None, 7], pa.int64(), Int64),
        ([0.0, -0.0, 1.5, float("nan"), None, 1e-300, 123456.789], pa.float64(), Float64),
        (["", "Food & beverage", "Côte d'Ivoire", None, "Web"], pa.string(), String),
    ],
)
def test_column_encoding_matches_feast(values, arrow_type, dtype):
    column = pa.array(values, arrow_type, from_pandas=True)
    blobs, texts = encode_column(column, dtype)
    # what stock materialize feeds Feast's converter: the Arrow column as NumPy
    protos = python_values_to_proto_values(
        column.to_numpy(zero_copy_only=False), dtype.to_value_type()
    )
    assert list(blobs) == [p.SerializeToString() for p in protos]
    kinds = [p.WhichOneof("val") for p in protos]
    want_texts = [
        None if k is None else str(getattr(p, k)) for p, k in zip(protos, kinds, strict=True)
    ]
    assert list(texts) == want_texts
    assert np.all([isinstance(b, bytes) for b in blobs])
