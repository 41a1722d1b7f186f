"""Nightly refresh of the online store: write only the feature values that changed.

The online store is the one `paths.online_store_url` names: Feast's SQLite store (below) or its
Redis store (the same diff, written by ml/online_redis.py). Either way what Feast's public API
reads back equals what stock `feast materialize` of the same latest rows serves.

Stock `feast materialize` into SQLite builds one ValueProto per value and issues one SQL statement
per value (about 1,400-1,900 leads/s at 41 features). This module writes into Feast's own SQLite
tables, byte for byte as Feast would (entity keys, serialized ValueProtos, value_text, event_ts),
so `FeatureStore.get_online_features` reads them unchanged, but it writes far less:

- the frame of the last refresh (lead_id plus every feature, normalised to Feast's types) is kept
  as Arrow IPC chunks in a side table of the same SQLite file (`online_refresh_snapshot`),
  committed in the same transaction as the online rows it describes, so no crash can separate
  them. (A Parquet file beside the database would need a generation counter to detect a crash
  between the SQLite commit and the file rename; inside the transaction it cannot happen.)
- the new frame is aligned to it by lead_id and compared column by column, vectorised (nulls equal
  nulls, NaN counts as null as Feast encodes it, doubles compared bit for bit), and only the
  changed (lead, feature) cells are upserted; new leads get all their cells; closed leads
  (converted, or aged out of `lead_features_latest`) lose their rows. On a real night that is
  about a tenth of the cells: days_since_created moves for everyone, a few counts for active leads.
- cells are encoded per column (ints and strings once per distinct value, doubles straight from
  their bytes) and go through one `executemany` in primary-key order, in one transaction, with
  the database in WAL mode so readers (the scoring service) keep the previous state meanwhile.

event_ts of a cell is the snapshot instant of the refresh that last wrote its value: an unchanged
cell keeps the instant at which that value was first served. Feast's SQLite `online_read` returns
one timestamp per (lead, view), taken from the last row it reads for that lead (in practice the
feature whose name sorts last), and never compares it with the view's TTL: every stored feature
reads back with status PRESENT and the same value as after a stock materialize of the same latest
rows; only the per-view event timestamps can be older than stock's.

The refresh falls back to rewriting every cell (and says why in `RefreshStats.full_rewrite`) when
asked to (`full=True`), when there is no snapshot or it is unreadable, when the views' schema
changed since it was written, or when the online tables do not hold what the snapshot says (row
count per table, plus the value bytes of a sample of leads): e.g. after `feast teardown` and
`feast apply` recreated them empty, or after a stock materialize wrote into them.

Closed leads are deleted because keeping them would serve stale features with no end: Feast's
SQLite reads do not apply the view TTL, and stock materialize can never remove an entity. Serving
scores a lead the online store does not know from the request's own fields. Afterwards the refresh
records a materialization interval in the registry, as stock materialize does, so
`feast feature-views describe` and `materialize-incremental` see the views as loaded.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import struct
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.types import Float64, Int32, Int64, String
from feast.utils import to_naive_utc
from feast.value_type import ValueType

from ml.config import Settings
from ml.errors import DataError
from ml.feature_store import feature_service, get_store

logger = logging.getLogger(__name__)

JOIN_KEY = "lead_id"
TIMESTAMP = "snapshot_ts"
SNAPSHOT_TABLE = "online_refresh_snapshot"
RUN_TABLE = "online_refresh_run"
_LEGACY_TABLES = ("online_refresh_state", "online_refresh_meta")  # the per-lead hashes of old
_CHUNK_ROWS = 250_000  # leads per snapshot blob: well under SQLite's 1 GB value limit
_SPOT_CHECK_LEADS = 64
_DOUBLE_TAG = 0x29  # ValueProto field 5 (double_val), wire type 1 (64-bit)


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did. A lead counts as written when any of its cells was written.

    `full_rewrite` names why every cell was rewritten (None: only changed cells were).
    """

    leads_read: int
    leads_written: int
    leads_unchanged: int
    leads_deleted: int
    cells_written: int
    seconds: float
    as_of: datetime | None
    full_rewrite: str | None = None

    @property
    def rows_written(self) -> int:
        """One SQLite row per (lead, feature) cell: the same count under its older name."""
        return self.cells_written

    @property
    def leads_per_second(self) -> float:
        return self.leads_read / self.seconds if self.seconds else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "leads_per_second": round(self.leads_per_second)}


# ---------------------------------------------------------------- encodings (as Feast writes them)


def entity_keys(lead_ids: list[str], serialization_version: int, *, check: bool = True
                ) -> list[bytes]:
    """serialize_entity_key(EntityKey(join_keys=["lead_id"], entity_values=[string])) per lead.

    `check` compares the first key with Feast's own encoder (a caller that checked once, like
    the service's reader at start-up, skips it per call)."""
    if serialization_version < 3:
        raise DataError("entity_key_serialization_version must be 3 or more (feature_store.yaml)")
    key = JOIN_KEY.encode()
    # Version 3: n_keys, then per key (type, len, name), then per value (type, len, bytes).
    string = ValueType.STRING.value
    prefix = struct.pack("<III", 1, string, len(key)) + key
    pack = struct.Struct("<II").pack
    keys = [prefix + pack(string, len(b)) + b for b in (s.encode() for s in lead_ids)]
    if keys and check:  # one check against Feast's own encoder guards against a format change
        proto = EntityKeyProto(
            join_keys=[JOIN_KEY], entity_values=[ValueProto(string_val=lead_ids[0])]
        )
        if serialize_entity_key(proto, serialization_version) != keys[0]:
            raise DataError("Feast's entity key encoding changed; update ml/online_refresh.py")
    return keys


def _text(proto: ValueProto) -> str | None:
    # value_text as Feast's extract_text_and_num fills it.
    kind = proto.WhichOneof("val")
    return None if kind is None else str(getattr(proto, kind))


def _encode_by_distinct(column: pa.Array, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Ints and strings: build one proto per distinct value, then index into them."""
    encoded = column.dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    protos = [ValueProto(**{field: v}) for v in dictionary] + [ValueProto()]  # last slot: null
    blobs = np.array([p.SerializeToString() for p in protos], dtype=object)
    texts = np.array([_text(p) for p in protos], dtype=object)
    idx = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
    return blobs[idx], texts[idx]


def _encode_doubles(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Doubles: tag byte + 8 little-endian bytes, cut from one buffer; NaN is null, as in Feast."""
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    null = np.isnan(values)
    packed = np.empty(len(values), dtype=np.dtype([("tag", "u1"), ("v", "<f8")]))
    packed["tag"] = _DOUBLE_TAG
    packed["v"] = values
    buf = packed.tobytes()
    # dtype=object keeps each 9-byte slice a bytes object (an "S9" array would strip trailing
    # zero bytes, e.g. of 0.0).
    blobs = np.array([buf[i : i + 9] for i in range(0, len(buf), 9)], dtype=object)
    texts = np.array(list(map(str, values.tolist())), dtype=object)
    blobs[null], texts[null] = b"", None
    return blobs, texts


def normalize_column(column: pa.Array | pa.ChunkedArray, dtype: Any) -> pa.Array:
    """The column cast as Feast converts it (ints truncated with int(), as Feast does)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    arrow_type = {String: pa.string(), Int32: pa.int32(), Int64: pa.int64(), Float64: pa.float64()}
    for feast_type, target in arrow_type.items():
        if dtype == feast_type:
            return column.cast(target, safe=False)
    return column


def encode_column(column: pa.Array, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Serialized ValueProtos and value_text of one feature column, as stock materialize writes.

    Returns two object arrays (bytes, and str or None) with one entry per row.
    """
    column = normalize_column(column, dtype)
    if dtype == String:
        return _encode_by_distinct(column, "string_val")
    if dtype in (Int32, Int64):
        return _encode_by_distinct(column, "int32_val" if dtype == Int32 else "int64_val")
    if dtype == Float64:
        return _encode_doubles(column)
    # Any other type: Feast's own (slow) converter, so correctness never depends on this module.
    protos = python_values_to_proto_values(
        column.to_numpy(zero_copy_only=False), dtype.to_value_type()
    )
    blobs = np.array([p.SerializeToString() for p in protos], dtype=object)
    return blobs, np.array([_text(p) for p in protos], dtype=object)


def changed_cells(old: pa.Array, new: pa.Array, dtype: Any) -> np.ndarray:
    """True where Feast would serialize the two (normalised) columns differently.

    Nulls equal nulls; doubles compare bit for bit (0.0 and -0.0 differ, every NaN is null).
    """
    if dtype == Float64:
        a = old.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
        b = new.to_numpy(zero_copy_only=False).astype(np.float64)
        null_a, null_b = np.isnan(a), np.isnan(b)
        return (null_a != null_b) | (~null_a & ~null_b & (a.view(np.int64) != b.view(np.int64)))
    if dtype in (String, Int32, Int64):
        null_a = old.is_null().to_numpy(zero_copy_only=False)
        null_b = new.is_null().to_numpy(zero_copy_only=False)
        differ = pc.fill_null(pc.not_equal(old, new), False).to_numpy(zero_copy_only=False)
        return (null_a != null_b) | differ
    return encode_column(old, dtype)[0] != encode_column(new, dtype)[0]


def _epoch_seconds(ts: pa.ChunkedArray) -> np.ndarray:
    """event_ts as Feast's SQLite adapter stores a datetime (naive UTC -> int seconds)."""
    encoded = ts.combine_chunks().dictionary_encode()  # a handful of distinct snapshot instants
    distinct = [int(adapt_datetime_epoch(to_naive_utc(t))) for t in encoded.dictionary.to_pylist()]
    return np.array(distinct, dtype=object)[encoded.indices.to_numpy()]


# ---------------------------------------------------------------- the snapshot of the last refresh


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ensure_state_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SNAPSHOT_TABLE} (project TEXT, chunk INTEGER, arrow BLOB, "
        "PRIMARY KEY (project, chunk))"
    )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {RUN_TABLE} (project TEXT PRIMARY KEY, generation INTEGER, "
        "fingerprint TEXT, n_leads INTEGER, as_of TEXT, refreshed_at TEXT)"
    )
    for legacy in _LEGACY_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {legacy}")


def views_fingerprint(tables: dict[str, FeatureView], serialization_version: int) -> str:
    # Any change to a table name, a feature or a type invalidates the snapshot.
    spec = [serialization_version] + [
        (table, sorted((f.name, str(f.dtype)) for f in view.features))
        for table, view in sorted(tables.items())
    ]
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


def snapshot_blobs(frame: pa.Table, generation: int) -> list[bytes]:
    """The frame of a refresh as Arrow IPC chunks (lz4 when available), tagged with its
    generation, to be stored in the same transaction as the online values it describes."""
    frame = frame.replace_schema_metadata({"generation": str(generation)})
    options = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
    blobs = []
    for start in range(0, max(frame.num_rows, 1), _CHUNK_ROWS):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, frame.schema, options=options) as writer:
            writer.write_table(frame.slice(start, _CHUNK_ROWS))
        blobs.append(sink.getvalue().to_pybytes())
    return blobs


def read_snapshot(
    blobs: list[bytes], generation: int, n_leads: int
) -> tuple[pa.Table | None, str | None]:
    """The frame stored by `snapshot_blobs`, or None and why it cannot be used."""
    try:
        parts = [pa.ipc.open_stream(blob).read_all() for blob in blobs]
        snapshot = pa.concat_tables(parts).combine_chunks()
        meta = snapshot.schema.metadata or {}
        ok = int(meta.get(b"generation", -1)) == generation and snapshot.num_rows == n_leads
    except (pa.ArrowException, ValueError) as exc:
        return None, f"the snapshot is unreadable ({exc})"
    if not ok:
        return None, "the snapshot does not match its generation"
    return snapshot, None


def _load_snapshot(
    conn: sqlite3.Connection, project: str, fingerprint: str
) -> tuple[pa.Table | None, int, str | None]:
    """The previous frame, its generation, and why it cannot be used (None: it can)."""
    run = conn.execute(
        f"SELECT generation, fingerprint, n_leads FROM {RUN_TABLE} WHERE project = ?", (project,)
    ).fetchone()
    if run is None:
        return None, 0, "no snapshot of a previous refresh"
    generation, stored_fingerprint, n_leads = run
    if stored_fingerprint != fingerprint:
        return None, generation, "the feature views changed since the last refresh"
    blobs = conn.execute(
        f"SELECT arrow FROM {SNAPSHOT_TABLE} WHERE project = ? ORDER BY chunk", (project,)
    ).fetchall()
    snapshot, reason = read_snapshot([blob for (blob,) in blobs], generation, n_leads)
    return snapshot, generation, reason


def _save_snapshot(
    conn: sqlite3.Connection,
    project: str,
    frame: pa.Table,
    generation: int,
    fingerprint: str,
    as_of: datetime,
) -> None:
    conn.execute(f"DELETE FROM {SNAPSHOT_TABLE} WHERE project = ?", (project,))
    for chunk, blob in enumerate(snapshot_blobs(frame, generation)):
        conn.execute(f"INSERT INTO {SNAPSHOT_TABLE} VALUES (?, ?, ?)", (project, chunk, blob))
    conn.execute(
        f"INSERT OR REPLACE INTO {RUN_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
        (
            project,
            generation,
            fingerprint,
            frame.num_rows,
            as_of.isoformat(),
            datetime.now(UTC).isoformat(),
        ),
    )


def _table_mismatch(
    conn: sqlite3.Connection,
    table: str,
    fields: list[Any],
    snapshot: pa.Table,
    serialization_version: int,
) -> str | None:
    """Why the online table does not hold what the snapshot says (None: it does, as far as seen).

    Checks the row count, then the value bytes of up to _SPOT_CHECK_LEADS leads spread over it.
    """
    (count,) = conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()
    if count != snapshot.num_rows * len(fields):
        return f"{table} holds {count} rows, the snapshot {snapshot.num_rows * len(fields)}"
    if not snapshot.num_rows:
        return None
    picks = np.unique(np.linspace(0, snapshot.num_rows - 1, _SPOT_CHECK_LEADS).astype(np.int64))
    sample = snapshot.take(pa.array(picks))
    keys = entity_keys(sample[JOIN_KEY].to_pylist(), serialization_version)
    want = {}
    for field in fields:
        blobs, _ = encode_column(sample[field.name], field.dtype)
        want.update({(k, field.name): b for k, b in zip(keys, blobs, strict=True)})
    got = conn.execute(
        f"SELECT entity_key, feature_name, value FROM {_quote(table)} "
        f"WHERE entity_key IN ({','.join('?' * len(keys))})",
        keys,
    ).fetchall()
    if {(k, n): v for k, n, v in got} != want:
        return f"{table} holds other values than the snapshot (written by someone else?)"
    return None


# ---------------------------------------------------------------- the refresh


def _read_latest(source: Path, features: list[str]) -> pa.Table:
    if not source.is_file():
        raise DataError(f"latest-features mart not found: {source}; run `dbt build` first")
    wanted = [JOIN_KEY, TIMESTAMP, *features]
    present = set(pq.read_schema(source).names)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"{source} lacks column(s) {missing}; see docs/contracts.md")
    table = pq.read_table(source, columns=wanted)
    if table.num_rows == 0:
        # An empty export is far likelier a broken dbt run than no open leads at all.
        raise DataError(f"{source} holds no leads; refusing to empty the online store")
    if pc.count_distinct(table[JOIN_KEY]).as_py() != table.num_rows:
        raise DataError(f"{source} has more than one row for some lead_id")
    if table[JOIN_KEY].null_count:
        raise DataError(f"{source} has rows without a lead_id")
    return table


def cell_values(
    fields: list[Any], frame: pa.Table, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Serialized ValueProtos and value_text of the cells (frame row, field index), encoded
    per field (fields sorted by name, as in the masks)."""
    blobs = np.empty(len(rows), dtype=object)
    texts = np.empty(len(rows), dtype=object)
    by_field = np.argsort(cols, kind="stable")  # each field's cells, in lead order
    bounds = np.searchsorted(cols[by_field], np.arange(len(fields) + 1))
    for j, field in enumerate(fields):
        cells = by_field[bounds[j] : bounds[j + 1]]
        if len(cells):
            column = frame[field.name].take(pa.array(rows[cells]))
            blobs[cells], texts[cells] = encode_column(column, field.dtype)
    return blobs, texts


def _write_cells(
    conn: sqlite3.Connection,
    table: str,
    fields: list[Any],
    frame: pa.Table,
    keys: np.ndarray,
    event_ts: np.ndarray,
    mask: np.ndarray,
) -> int:
    """Upsert the cells of `frame` where mask[lead, feature] (fields sorted by name)."""
    rows, cols = np.nonzero(mask)  # row-major: (entity_key, feature_name), the primary-key order
    if not len(rows):
        return 0
    blobs, texts = cell_values(fields, frame, rows, cols)
    names = np.array([f.name for f in fields], dtype=object)
    conn.executemany(
        f"INSERT INTO {_quote(table)} "
        "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts",
        zip(
            keys[rows].tolist(),
            names[cols].tolist(),
            blobs.tolist(),
            texts.tolist(),
            event_ts[rows].tolist(),
            strict=True,
        ),
    )
    return len(rows)


def cell_mask(
    frame: pa.Table, fields: list[Any], previous: pa.Table | None, position: np.ndarray
) -> np.ndarray:
    """mask[lead, feature]: the cell differs from the previous frame (new leads: every cell)."""
    mask = np.ones((frame.num_rows, len(fields)), dtype=bool)
    if previous is None:
        return mask
    common = np.flatnonzero(position >= 0)
    rows, old_rows = pa.array(common), pa.array(position[common])
    for j, field in enumerate(fields):
        mask[common, j] = changed_cells(
            previous[field.name].take(old_rows), frame[field.name].take(rows), field.dtype
        )
    return mask


def _record_materialization(store: FeatureStore, views: list[FeatureView], as_of: datetime) -> None:
    # Same registry call as stock materialize: one interval per run, ending at the mart's as-of.
    # A re-run on the same mart adds nothing, so the interval list grows once per new as-of.
    for view in views:
        last = view.most_recent_end_time
        if last is not None and last >= as_of:
            continue
        start = last or as_of - (view.ttl or timedelta(0))
        store.registry.apply_materialization(view, store.project, start, as_of, commit=True)


def _refresh_sqlite(
    config: Any,
    tables: dict[str, FeatureView],
    frame: pa.Table,
    keys: np.ndarray,
    event_ts: np.ndarray,
    fingerprint: str,
    as_of: datetime,
    full: bool,
) -> tuple[int, int, np.ndarray, str | None]:
    """Write the changed cells into Feast's SQLite tables, in one transaction.

    Returns (cells written, leads deleted, written[lead], why every cell was rewritten)."""
    version = config.entity_key_serialization_version
    db_path = Path(config.online_store.path)
    if not db_path.is_absolute():
        db_path = Path(config.repo_path) / db_path
    written = np.zeros(frame.num_rows, dtype=bool)
    cells = 0
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=60)
    try:
        # WAL: readers keep the previous snapshot while this transaction writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MB: the B-trees of a big refresh
        conn.execute("BEGIN IMMEDIATE")
        try:
            _ensure_state_tables(conn)
            for table in tables:
                exists = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()
                if not exists:
                    raise DataError(
                        f"online table {table} does not exist; "
                        "run `lead-scoring features apply` first"
                    )
            previous, generation, reason = _load_snapshot(conn, config.project, fingerprint)
            if full:
                previous, reason = None, "asked for (full=True)"
            for table, view in tables.items():
                if previous is None:
                    break
                fields = sorted(view.features, key=lambda f: f.name)
                reason = _table_mismatch(conn, table, fields, previous, version)
                if reason:
                    previous = None
            if reason:
                logger.info("online refresh rewrites every cell: %s", reason)

            if previous is None:
                # The snapshot cannot say which leads closed: ask the tables.
                stored = set()
                for table in tables:
                    stored.update(
                        k
                        for (k,) in conn.execute(f"SELECT DISTINCT entity_key FROM {_quote(table)}")
                    )
                closed_keys = sorted(stored - set(keys.tolist()))
            else:
                closed_keys = closed_since(previous, frame, version)
            position = previous_position(previous, frame)

            for table, view in tables.items():
                fields = sorted(view.features, key=lambda f: f.name)
                mask = cell_mask(frame, fields, previous, position)
                cells += _write_cells(conn, table, fields, frame, keys, event_ts, mask)
                written |= mask.any(axis=1)
                conn.executemany(
                    f"DELETE FROM {_quote(table)} WHERE entity_key = ?", ((k,) for k in closed_keys)
                )
            if cells or closed_keys or previous is None:
                _save_snapshot(conn, config.project, frame, generation + 1, fingerprint, as_of)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return cells, len(closed_keys), written, reason


def previous_position(previous: pa.Table | None, frame: pa.Table) -> np.ndarray:
    """Each lead's row in the previous frame (-1: new, or no previous frame)."""
    if previous is None:
        return np.full(frame.num_rows, -1)
    position = pc.index_in(frame[JOIN_KEY], value_set=previous[JOIN_KEY])
    return position.fill_null(-1).to_numpy()


def closed_since(previous: pa.Table, frame: pa.Table, serialization_version: int) -> list[bytes]:
    """Entity keys of the leads of the previous frame that are not in this one."""
    gone = pc.invert(pc.is_in(previous[JOIN_KEY], value_set=frame[JOIN_KEY]))
    closed_ids = previous[JOIN_KEY].filter(gone).to_pylist()
    return entity_keys(closed_ids, serialization_version) if closed_ids else []


def refresh_online_store(
    settings: Settings, source: Path | None = None, full: bool = False
) -> RefreshStats:
    """Write the latest features of every open lead into Feast's online store (SQLite or Redis,
    as `paths.online_store_url` names it).

    Only cells that changed since the last refresh are written (see the module docstring);
    unchanged cells keep their value and the event timestamp of the refresh that wrote them.

    Args:
        source: the latest-features Parquet (default `<marts_dir>/lead_features_latest.parquet`).
        full: rewrite every cell, ignoring the snapshot of the previous refresh.

    Raises:
        DataError: the mart is missing, empty or malformed, or `features apply` was not run.
    """
    started = time.perf_counter()
    source = source or settings.paths.marts_dir / "lead_features_latest.parquet"
    store = get_store(settings)
    config = store.config
    kind = config.online_store.type
    if kind not in ("sqlite", "redis"):
        raise DataError(
            f"the online refresh writes SQLite or Redis (the online store is {kind}); "
            "use stock `feast materialize` for other online stores"
        )
    service = feature_service(store, settings)
    # The whole views, as stock materialize writes them (a service may project a subset).
    views = [store.get_feature_view(p.name) for p in service.feature_view_projections]
    versioning = config.registry.enable_online_feature_view_versioning
    tables = {compute_table_id(config.project, v, versioning): v for v in views}
    dtypes = {f.name: f.dtype for v in views for f in v.features}
    version = config.entity_key_serialization_version
    latest = _read_latest(source, list(dtypes))
    keys = np.array(entity_keys(latest[JOIN_KEY].to_pylist(), version), dtype=object)
    # Entity-key order is the online tables' primary-key order (see _write_cells).
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    latest = latest.take(pa.array(order))
    frame = pa.table(
        {JOIN_KEY: latest[JOIN_KEY].combine_chunks()}
        | {name: normalize_column(latest[name], dtype) for name, dtype in dtypes.items()}
    )
    as_of = pc.max(latest[TIMESTAMP]).as_py()
    as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of
    fingerprint = views_fingerprint(tables, version)

    if kind == "sqlite":
        event_ts = _epoch_seconds(latest[TIMESTAMP])
        cells, deleted, written, reason = _refresh_sqlite(
            config, tables, frame, keys, event_ts, fingerprint, as_of, full
        )
    else:
        from ml.online_redis import refresh_redis

        cells, deleted, written, reason = refresh_redis(
            config, views, frame, keys, latest[TIMESTAMP], fingerprint, as_of, full
        )

    _record_materialization(store, views, as_of)
    if service.precompute_online:
        store.precompute_feature_service(service.name)  # as stock materialize does

    stats = RefreshStats(
        leads_read=frame.num_rows,
        leads_written=int(written.sum()),
        leads_unchanged=int((~written).sum()),
        leads_deleted=deleted,
        cells_written=cells,
        seconds=round(time.perf_counter() - started, 3),
        as_of=as_of,
        full_rewrite=reason,
    )
    logger.info("online refresh: %s", stats.as_dict())
    return stats
