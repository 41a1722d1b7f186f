"""The fast online refresh writes what stock `feast materialize` writes, and only what changed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis
from fabricate_marts import make_settings, write_marts
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.types import Float64, Int32, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from ml import feature_store
from ml.errors import ConfigError, DataError
from ml.online_redis import STATE_PREFIX, feature_field, stored_lead_keys
from ml.online_refresh import changed_cells, encode_column, entity_keys, refresh_online_store

TABLES = ("lead_scoring_lead_profile", "lead_scoring_lead_engagement")
VIEWS = {table: table.removeprefix("lead_scoring_") for table in TABLES}


def is_redis(settings) -> bool:
    return settings.paths.online_store_url.startswith("redis")


def redis_of(settings) -> redis.Redis:
    return redis.Redis.from_url(settings.paths.online_store_url)


def table_rows(settings, table: str) -> list[tuple]:
    """What the online store holds for one view, in a form to compare: SQLite's rows
    (entity_key, feature_name, value, value_text, event_ts, ...), or per lead hash in Redis
    (entity_key, feature_name, value, None, the view's _ts field) for each feature of the view."""
    if is_redis(settings):
        return redis_rows(settings, VIEWS[table])
    with sqlite3.connect(settings.paths.feast_dir / "online_store.db") as conn:
        return conn.execute(
            f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts, "
            f"vector_value FROM {table} ORDER BY entity_key, feature_name"
        ).fetchall()


def redis_rows(settings, view: str) -> list[tuple]:
    client = redis_of(settings)
    project = b"lead_scoring"
    names = {feature_field(view, f): f for f in view_features(settings, view)}
    rows = []
    for key in stored_lead_keys(client, "lead_scoring", 3):
        fields = client.hgetall(key + project)
        ts = fields.get(f"_ts:{view}".encode())
        if ts is None:
            continue
        seconds = Timestamp.FromString(ts).seconds
        rows += [(key, names[f], v, None, seconds) for f, v in fields.items() if f in names]
    return sorted(rows)


def view_features(settings, view: str) -> list[str]:
    store = feature_store.get_store(settings)
    return [f.name for f in store.get_feature_view(view).features]


def latest_ids(settings) -> list[str]:
    path = settings.paths.marts_dir / "lead_features_latest.parquet"
    return pq.read_table(path, columns=["lead_id"])["lead_id"].to_pylist()


def rewrite_latest(settings, change) -> None:
    path = settings.paths.marts_dir / "lead_features_latest.parquet"
    pq.write_table(change(pq.read_table(path)), path)


@pytest.mark.parametrize("tz_aware", [False, True], ids=["naive-ts", "utc-ts"])
def test_refresh_reads_back_identical_to_stock_materialize(
    tmp_path: Path, tz_aware: bool, online_store_url
):
    stock = make_settings(tmp_path / "stock", online_store_url())
    ours = make_settings(tmp_path / "ours", online_store_url())
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
    # and byte for byte the same rows or hash fields (entity keys, ValueProtos, event_ts)
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


def n_features(settings) -> int:
    return len(feature_store.feature_names(feature_store.get_store(settings), settings))


def set_cell(table: pa.Table, lead: str, column: str, value) -> pa.Table:
    values = table[column].to_pylist()
    values[table["lead_id"].to_pylist().index(lead)] = value
    idx = table.column_names.index(column)
    return table.set_column(idx, column, pa.array(values, table.schema.field(column).type))


def next_day(table: pa.Table) -> pa.Table:
    """The same leads a day later: days_since_created +1, snapshot_ts +1 day."""
    ts = pc.add(table["snapshot_ts"], pa.scalar(timedelta(days=1), pa.duration("us")))
    days = pc.add(table["days_since_created"], pa.scalar(1, pa.int32()))
    table = table.set_column(table.column_names.index("snapshot_ts"), "snapshot_ts", ts)
    idx = table.column_names.index("days_since_created")
    return table.set_column(idx, "days_since_created", days)


def test_one_changed_cell_rewrites_only_that_cell(fresh):
    settings, _ = fresh
    refresh_online_store(settings)
    before = {t: table_rows(settings, t) for t in TABLES}
    lead = "L0000001"
    rewrite_latest(settings, lambda t: set_cell(t, lead, "engagement_score", 99.5))

    stats = refresh_online_store(settings)

    assert (stats.cells_written, stats.leads_written, stats.leads_deleted) == (1, 1, 0)
    assert stats.full_rewrite is None
    after = {t: table_rows(settings, t) for t in TABLES}
    assert after["lead_scoring_lead_profile"] == before["lead_scoring_lead_profile"]
    differ = [
        (old, new)
        for old, new in zip(
            *(x["lead_scoring_lead_engagement"] for x in (before, after)), strict=True
        )
        if old != new
    ]
    assert len(differ) == 1
    (old, new), key = differ[0], entity_keys([lead], 3)[0]
    assert new[:2] == old[:2] == (key, "engagement_score")
    assert new[2] == Value(double_val=99.5).SerializeToString()
    assert new[3] == (None if is_redis(settings) else "99.5")
    assert feature_store.online_features(settings, [lead])["engagement_score"].item() == 99.5


def test_unchanged_cells_keep_the_event_ts_of_their_last_write(fresh):
    settings, info = fresh
    refresh_online_store(settings)
    rewrite_latest(settings, next_day)
    stats = refresh_online_store(settings)

    # days_since_created moved for every lead: one cell each, nothing else
    assert stats.cells_written == stats.leads_written == stats.leads_read
    day1 = adapt_datetime_epoch(info["as_of"])
    day2 = adapt_datetime_epoch(info["as_of"] + timedelta(days=1))
    for table in TABLES:
        for _, name, _, _, event_ts, *_ in table_rows(settings, table):
            # SQLite keeps a timestamp per cell, Redis one per (lead, view): the profile view
            # holds days_since_created, so its timestamp moved; engagement's did not
            moved = table == TABLES[0] if is_redis(settings) else name == "days_since_created"
            assert event_ts == (day2 if moved else day1), name


def test_a_new_lead_is_written_whole_and_a_closed_lead_deleted(fresh):
    settings, _ = fresh
    refresh_online_store(settings)
    ids = latest_ids(settings)
    closed, template = ids[0], ids[1]

    def change(table: pa.Table) -> pa.Table:
        row = table.filter(pc.equal(table["lead_id"], template))
        row = row.set_column(0, "lead_id", pa.array(["L9999999"]))
        return pa.concat_tables([table.filter(pc.not_equal(table["lead_id"], closed)), row])

    rewrite_latest(settings, change)
    stats = refresh_online_store(settings)

    assert (stats.leads_written, stats.leads_deleted) == (1, 1)
    assert stats.cells_written == n_features(settings)
    online = feature_store.online_features(settings, [closed, template, "L9999999"])
    assert online.iloc[0, 1:].isna().all()
    pd.testing.assert_series_equal(online.iloc[1, 1:], online.iloc[2, 1:], check_names=False)
    key = entity_keys([closed], 3)[0]
    assert not any(row[0] == key for t in TABLES for row in table_rows(settings, t))


def corrupt(settings, how: str) -> None:
    """Break the agreement between the snapshot and the online tables in one of three ways."""
    if how == "tables recreated":  # `feast teardown` then `feast apply`
        store = feature_store.get_store(settings)
        store.teardown()
        feature_store.apply_feature_repo(settings)
        return
    if is_redis(settings):
        client = redis_of(settings)
        if how == "snapshot missing":
            client.delete(*client.keys(f"{STATE_PREFIX}*"))
        elif how == "values overwritten":
            field = feature_field("lead_engagement", "engagement_score")
            for key in stored_lead_keys(client, "lead_scoring", 3):
                client.hset(key + b"lead_scoring", field, b"\x29" + bytes(8))
        return
    with sqlite3.connect(settings.paths.feast_dir / "online_store.db") as conn:
        if how == "snapshot missing":
            conn.execute("DELETE FROM online_refresh_snapshot")
        elif how == "values overwritten":  # e.g. a stock materialize of an older mart
            conn.execute(f"UPDATE {TABLES[1]} SET value = X'29' || zeroblob(8)")


@pytest.mark.parametrize("how", ["snapshot missing", "tables recreated", "values overwritten"])
def test_refresh_falls_back_to_a_full_rewrite(fresh, how: str):
    settings, _ = fresh
    refresh_online_store(settings)
    want = [table_rows(settings, t) for t in TABLES]
    corrupt(settings, how)

    stats = refresh_online_store(settings)

    assert stats.full_rewrite is not None
    assert stats.cells_written == stats.leads_read * n_features(settings)
    assert [table_rows(settings, t) for t in TABLES] == want
    assert refresh_online_store(settings).cells_written == 0  # and the snapshot is back


def test_a_multi_day_sequence_reads_back_identical_to_stock(tmp_path: Path, online_store_url):
    stock = make_settings(tmp_path / "stock", online_store_url())
    ours = make_settings(tmp_path / "ours", online_store_url())
    info = write_marts(ours.paths.marts_dir)
    feature_store.apply_feature_repo(ours)
    refresh_online_store(ours)
    ids = latest_ids(ours)

    def day2(t: pa.Table) -> pa.Table:
        # a count, a rate to null, a null-or-not string, 0.0 to -0.0; one lead closes
        t = set_cell(t, ids[3], "n_webinar_7d", 9)
        t = set_cell(t, ids[4], "email_click_rate_90d", None)
        t = set_cell(t, ids[5], "industry", "Technology")
        t = set_cell(t, ids[6], "engagement_score", -0.0)
        return t.filter(pc.not_equal(t["lead_id"], ids[7]))

    def day3(t: pa.Table) -> pa.Table:
        # a string to null, a tiny double, a new lead
        t = set_cell(t, ids[5], "industry", None)
        t = set_cell(t, ids[8], "engagement_score", 1e-300)
        row = t.filter(pc.equal(t["lead_id"], ids[9])).set_column(
            0, "lead_id", pa.array(["L9999999"])
        )
        return pa.concat_tables([t, row])

    for change in (day2, day3):
        rewrite_latest(ours, lambda t, change=change: change(next_day(t)))
        stats = refresh_online_store(ours)
        assert stats.full_rewrite is None
        assert stats.cells_written < stats.leads_read * n_features(ours) / 2

    # stock materialize of the same latest rows into a fresh store
    final = pq.read_table(ours.paths.marts_dir / "lead_features_latest.parquet")
    stock.paths.marts_dir.mkdir(parents=True)
    pq.write_table(final, stock.paths.marts_dir / "lead_features.parquet")
    pq.write_table(final, stock.paths.marts_dir / "lead_features_latest.parquet")
    feature_store.apply_feature_repo(stock)
    feature_store.materialize_stock(stock, info["as_of"] + timedelta(days=2, seconds=1))

    requested = [*final["lead_id"].to_pylist(), ids[7], "L-unknown"]
    pd.testing.assert_frame_equal(
        feature_store.online_features(stock, requested),
        feature_store.online_features(ours, requested),
    )
    a, b = (online_response(s, requested) for s in (stock, ours))
    assert [r.statuses for r in a.results] == [r.statuses for r in b.results]
    # Feast reports one event timestamp per (lead, view): never newer than stock's
    for ra, rb in zip(a.results, b.results, strict=True):
        assert all(
            tb.seconds <= ta.seconds
            for ta, tb in zip(ra.event_timestamps, rb.event_timestamps, strict=True)
        )
    for table in TABLES:
        assert [r[:4] for r in table_rows(stock, table)] == [r[:4] for r in table_rows(ours, table)]


def online_response(settings, lead_ids: list[str]):
    store = feature_store.get_store(settings)
    service = feature_store.feature_service(store, settings)
    response = store.get_online_features(
        features=service, entity_rows=[{"lead_id": i} for i in lead_ids]
    )
    return response.proto


@pytest.mark.parametrize(
    ("old", "new", "arrow_type", "dtype", "want"),
    [
        (
            [0.0, -0.0, float("nan"), None, 1.5, None],
            [-0.0, 0.0, None, float("nan"), 1.5, 2.0],
            pa.float64(),
            Float64,
            [True, True, False, False, False, True],
        ),
        ([1, None, None, 3], [1, None, 2, 4], pa.int32(), Int32, [False, False, True, True]),
        (
            ["a", None, "b", None],
            ["a", None, None, "b"],
            pa.string(),
            String,
            [False, False, True, True],
        ),
    ],
)
def test_changed_cells_compares_as_feast_encodes(old, new, arrow_type, dtype, want):
    a = pa.array(old, arrow_type, from_pandas=False)
    b = pa.array(new, arrow_type, from_pandas=False)
    assert changed_cells(a, b, dtype).tolist() == want
    blobs = [encode_column(x, dtype)[0] for x in (a, b)]
    assert [x != y for x, y in zip(*blobs, strict=True)] == want


def test_refresh_records_the_materialization_in_the_registry(fresh):
    settings, info = fresh
    refresh_online_store(settings)
    store = feature_store.get_store(settings)
    for view in store.list_feature_views():
        assert view.most_recent_end_time.replace(tzinfo=None) == info["as_of"]


def test_refresh_refuses_without_apply_or_with_an_empty_mart(tmp_path: Path, online_store_url):
    settings = make_settings(tmp_path, online_store_url())
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
