"""The online refresh into Feast's Redis online store: only the changed cells, in one transaction.

Feast's Redis store keeps one hash per entity and project: key = the serialized entity key + the
project name; a field per feature, `murmur3("<view>:<feature>")` -> the serialized ValueProto
(empty for a null), and one `_ts:<view>` field per view -> a protobuf Timestamp. Stock
`feast materialize` writes every field of every lead each time; this refresh writes, per lead and
view, only the fields whose value changed since the last refresh (same diff as for SQLite,
ml/online_refresh.py), plus that view's `_ts:` field. A closed lead's hash is deleted.

The frame of the last refresh (Arrow IPC chunks) and its generation live in Redis beside the
features (`lead_scoring:online_refresh:<project>:*`) and are written in the same MULTI/EXEC as the
changes they describe, so a reader sees the whole refresh or none of it and no failure can
separate the snapshot from the values. Before trusting the snapshot, the refresh checks that Redis
holds what it says (the number of the project's lead hashes, and every field of a sample of
leads); otherwise (e.g. after FLUSHDB, a restart without persistence, or a stock materialize)
it rewrites every cell and deletes the hashes of leads that are not open.

What reads back through Feast's public API (`get_online_features`) is identical to a stock
materialize of the same latest rows; only a view's event timestamp can be older than stock's
(the instant its values last changed). The Redis store must be a single server (`redis_type:
redis`): a cluster cannot run one transaction over many keys.
"""

from __future__ import annotations

import json
import logging
import struct
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import redis
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key_prefix
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

from ml.errors import ConfigError, DataError
from ml.online_refresh import (
    JOIN_KEY,
    cell_mask,
    cell_values,
    closed_since,
    encode_column,
    entity_keys,
    previous_position,
    read_snapshot,
    snapshot_blobs,
)

logger = logging.getLogger(__name__)

STATE_PREFIX = "lead_scoring:online_refresh:"
_SPOT_CHECK_LEADS = 64


def feature_field(view_name: str, feature: str) -> bytes:
    """The hash field of a feature, as Feast's Redis store names it (murmur3_32, little endian)."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view_name}:{feature}", signed=False))


def redis_client(online_store: Any) -> redis.Redis:
    """A client on the Redis of Feast's online store config (its `connection_string`)."""
    if getattr(online_store, "redis_type", "redis") != "redis":
        raise ConfigError(
            "the online refresh writes a single Redis server (redis_type "
            f"{online_store.redis_type} cannot run one transaction over all keys)"
        )
    host_port, *params = online_store.connection_string.split(",")
    host, _, port = host_port.partition(":")
    kwargs: dict[str, Any] = {}
    for param in params:  # values decoded as JSON where they are JSON, as Feast does
        key, _, value = param.partition("=")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    # One refresh is one big transaction: give it longer than a serving read gets.
    kwargs.update(socket_timeout=120)
    return redis.Redis(host=host, port=int(port or 6379), **kwargs)


def _glob_escape(raw: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in raw)


def stored_lead_keys(client: redis.Redis, project: str, serialization_version: int) -> set[bytes]:
    """The entity keys of every lead hash the project holds in this Redis database."""
    prefix = serialize_entity_key_prefix([JOIN_KEY], serialization_version)
    suffix = project.encode()
    pattern = _glob_escape(prefix) + b"*" + _glob_escape(suffix)
    found = set()
    for key in client.scan_iter(match=pattern, count=10_000):
        entity = key[: -len(suffix)]
        # a project whose name ends in ours matches the pattern too: the entity key must be
        # exactly prefix + (type, length, value)
        rest = entity[len(prefix) :]
        if len(rest) >= 8 and struct.unpack_from("<I", rest, 4)[0] == len(rest) - 8:
            found.add(entity)
    return found


def _timestamps(ts: pa.ChunkedArray) -> np.ndarray:
    """The `_ts:` field value per row, as Feast serializes the row's event timestamp."""
    encoded = ts.combine_chunks().dictionary_encode()
    blobs = []
    for value in encoded.dictionary.to_pylist():
        proto = Timestamp()
        proto.FromDatetime(make_tzaware(value))
        blobs.append(proto.SerializeToString())
    return np.array(blobs, dtype=object)[encoded.indices.to_numpy()]


def _expected_fields(
    views: dict[str, FeatureView], sample: pa.Table
) -> tuple[list[bytes], np.ndarray]:
    """The feature fields of every view and the value bytes the sample's leads should hold."""
    fields, columns = [], []
    for name, view in views.items():
        for field in sorted(view.features, key=lambda f: f.name):
            fields.append(feature_field(name, field.name))
            columns.append(encode_column(sample[field.name], field.dtype)[0])
    return fields, np.stack(columns, axis=1) if columns else np.empty((sample.num_rows, 0))


def _mismatch(
    client: redis.Redis,
    config: Any,
    views: dict[str, FeatureView],
    snapshot: pa.Table,
    stored: set[bytes],
) -> str | None:
    """Why Redis does not hold what the snapshot says (None: it does, as far as seen)."""
    version = config.entity_key_serialization_version
    if len(stored) != snapshot.num_rows:
        return f"Redis holds {len(stored)} lead hashes, the snapshot {snapshot.num_rows}"
    if not snapshot.num_rows:
        return None
    picks = np.unique(np.linspace(0, snapshot.num_rows - 1, _SPOT_CHECK_LEADS).astype(np.int64))
    sample = snapshot.take(pa.array(picks))
    keys = entity_keys(sample[JOIN_KEY].to_pylist(), version)
    fields, want = _expected_fields(views, sample)
    project = config.project.encode()
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key + project, fields)
        got = pipe.execute()
    for row, values in enumerate(got):
        # a missing field reads as None, a stored null as b""
        if list(values) != list(want[row]):
            return "Redis holds other values than the snapshot (written by someone else?)"
    return None


def _load_state(
    client: redis.Redis, state: str, fingerprint: str
) -> tuple[pa.Table | None, int, str | None]:
    run = client.hgetall(f"{state}run")
    if not run:
        return None, 0, "no snapshot of a previous refresh"
    generation = int(run[b"generation"])
    if run[b"fingerprint"].decode() != fingerprint:
        return None, generation, "the feature views changed since the last refresh"
    n_chunks = int(run[b"chunks"])
    blobs = client.mget([f"{state}snapshot:{i}" for i in range(n_chunks)]) if n_chunks else []
    if any(b is None for b in blobs):
        return None, generation, "the snapshot is incomplete"
    snapshot, reason = read_snapshot(blobs, generation, int(run[b"n_leads"]))
    return snapshot, generation, reason


def refresh_redis(
    config: Any,
    views: list[FeatureView],
    frame: pa.Table,
    keys: np.ndarray,
    snapshot_ts: pa.ChunkedArray,
    fingerprint: str,
    as_of: datetime,
    full: bool,
) -> tuple[int, int, np.ndarray, str | None]:
    """Write the changed cells of `frame` into Feast's Redis store, in one MULTI/EXEC.

    Args:
        views: the service's feature views; frame: lead_id plus every feature, rows in `keys`
            order; keys: the serialized entity keys; snapshot_ts: each row's event timestamp.

    Returns (cells written, leads deleted, written[lead], why every cell was rewritten)."""
    client = redis_client(config.online_store)
    version = config.entity_key_serialization_version
    versioning = config.registry.enable_online_feature_view_versioning
    named = {compute_versioned_name(v, versioning): v for v in views}
    project = config.project
    state = f"{STATE_PREFIX}{project}:"
    try:
        stored = stored_lead_keys(client, project, version)
        previous, generation, reason = _load_state(client, state, fingerprint)
    except redis.RedisError as exc:
        raise DataError(f"the Redis online store cannot be read: {exc}") from exc
    if full:
        previous, reason = None, "asked for (full=True)"
    if previous is not None:
        reason = _mismatch(client, config, named, previous, stored)
        if reason:
            previous = None
    if reason:
        logger.info("online refresh rewrites every cell: %s", reason)
    if previous is None:
        closed = sorted(stored - set(keys.tolist()))
    else:
        closed = closed_since(previous, frame, version)
    position = previous_position(previous, frame)

    suffix = project.encode()
    ts_blobs = _timestamps(snapshot_ts)
    written = np.zeros(frame.num_rows, dtype=bool)
    cells = 0
    updates: dict[int, dict[bytes, bytes]] = {}  # lead row -> fields to set
    for name, view in named.items():
        fields = sorted(view.features, key=lambda f: f.name)
        mask = cell_mask(frame, fields, previous, position)
        rows, cols = np.nonzero(mask)
        if not len(rows):
            continue
        blobs, _ = cell_values(fields, frame, rows, cols)
        names = [feature_field(name, f.name) for f in fields]
        ts_field = f"_ts:{name}".encode()
        for row, col, blob in zip(rows.tolist(), cols.tolist(), blobs.tolist(), strict=True):
            mapping = updates.setdefault(row, {})
            mapping[names[col]] = blob
            mapping[ts_field] = ts_blobs[row]
        cells += len(rows)
        written |= mask.any(axis=1)

    ttl = getattr(config.online_store, "key_ttl_seconds", None)
    try:
        with client.pipeline(transaction=True) as pipe:
            for row, mapping in updates.items():
                pipe.hset(keys[row] + suffix, mapping=mapping)
            for key in closed:
                pipe.delete(key + suffix)
            if ttl:  # as stock does on every write; unchanged leads are still open, so renew
                for key in keys.tolist():
                    pipe.expire(key + suffix, ttl)
            if cells or closed or previous is None:
                blobs = snapshot_blobs(frame, generation + 1)
                old_chunks = int(client.hget(f"{state}run", "chunks") or 0)
                for i, blob in enumerate(blobs):
                    pipe.set(f"{state}snapshot:{i}", blob)
                for i in range(len(blobs), old_chunks):
                    pipe.delete(f"{state}snapshot:{i}")
                pipe.hset(
                    f"{state}run",
                    mapping={
                        "generation": generation + 1,
                        "fingerprint": fingerprint,
                        "n_leads": frame.num_rows,
                        "chunks": len(blobs),
                        "as_of": as_of.isoformat(),
                        "refreshed_at": datetime.now(UTC).isoformat(),
                    },
                )
            pipe.execute()
    except redis.RedisError as exc:
        raise DataError(f"the Redis online store refused the refresh: {exc}") from exc
    return cells, len(closed), written, reason
