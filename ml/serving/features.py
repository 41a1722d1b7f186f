"""Online features for the service, read through the Feast online store's own read path.

`FeatureStore.get_online_features` resolves the feature service, its views and their entities
on every call (about 0.3 ms); the service cannot afford that per request. `OnlineFeatureReader`
resolves them once at start-up, builds the online store the settings name with Feast's own
factory (`get_online_store_from_config`) and then calls its `online_read` per view (the
`OnlineStore` interface every Feast store implements, and the method Feast's lookup ends in), so
the features come from the Feast online store (SQLite by default, Redis in production) and are
decoded from Feast's own ValueProtos. Feast's Redis store answers an unknown entity with empty
values and no timestamp rather than None; that is read as "not in the store" too.

On SQLite the reader asks Feast's tables itself, in one statement for every view: Feast's
`online_read` issues one query per view, fetches every feature of the lead with its timestamp
(converted to a datetime per row) and builds a dict of protos per view, about 0.2 ms of a
request's ~1.5 ms; the one statement takes a quarter of that. The tables, their keys and the
ValueProto bytes are the ones ml/online_refresh.py writes byte for byte as Feast does (its
`entity_keys` checks itself against Feast's encoder), and a test compares what this reader
returns with Feast's public `get_online_features` for every lead.

Surviving the store. Reads run on the event loop, so a store that hangs would stall every
request: an SQLite store waits at most `SQLITE_BUSY_TIMEOUT_MS` for a lock (Feast's default is
5 s), and `try_read` answers None ("unavailable") instead of raising. After a failed read the
store is skipped for a backoff (0.5 s doubling to 5 s; requests meanwhile are scored from their
own fields) and then tried again by the next request, so the service recovers by itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from feast import FeatureView
from feast.infra.online_stores.helpers import compute_table_id, get_online_store_from_config
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from ml.config import Settings
from ml.feature_store import feature_service, get_store
from ml.online_refresh import entity_keys

log = logging.getLogger(__name__)

JOIN_KEY = "lead_id"
SQLITE_BUSY_TIMEOUT_MS = 20  # longest wait for a locked SQLite store, per read
RETRY_START_SECONDS = 0.5  # after a failed read the store is skipped this long, doubling ...
RETRY_MAX_SECONDS = 5.0  # ... up to this


def _python_value(proto: ValueProto) -> Any:
    kind = proto.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(proto, kind)


def _decode(value: bytes) -> Any:
    proto = ValueProto()
    proto.ParseFromString(value)
    return _python_value(proto)


# Decoded ValueProto bytes (counts, flags, levels and rates repeat across leads): a dict lookup
# instead of a parse per feature. Only immutable values are kept; the cache starts anew when full.
DECODED_CACHE_SIZE = 100_000
_IMMUTABLE = frozenset([int, float, str, bool, bytes, type(None)])
_UNDECODED = object()


def _has_value(proto: ValueProto) -> bool:
    return proto.WhichOneof("val") not in (None, "null_val")


def _unset(ts: Any) -> bool:
    return ts is None or ts.timestamp() == 0


@dataclass(frozen=True)
class _View:
    view: FeatureView
    features: list[str]


class OnlineFeatureReader:
    """Features of the `lead_scoring` service by lead_id, views resolved once."""

    def __init__(self, settings: Settings) -> None:
        store = get_store(settings)
        service = feature_service(store, settings)
        self._config = store.config
        self._online_store = get_online_store_from_config(store.config.online_store)
        self._views = [
            _View(store.get_feature_view(p.name), [f.name for f in p.features])
            for p in service.feature_view_projections
        ]
        self.feature_names: list[str] = [f for v in self._views for f in v.features]
        versioning = store.config.registry.enable_online_feature_view_versioning
        self._tables = [compute_table_id(store.config.project, v.view, versioning)
                        for v in self._views]
        if isinstance(self._online_store, SqliteOnlineStore):  # Feast's key encoding, once
            entity_keys(["__probe__"], store.config.entity_key_serialization_version)
        self._wanted = frozenset(self.feature_names)
        self._statements: dict[int, str] = {}  # per number of leads, the one-statement read
        self._decoded: dict[bytes, Any] = {}  # ValueProto bytes -> value (see DECODED_CACHE_SIZE)
        self.failed_reads = 0  # reads that raised, in all (a metrics counter)
        self._failures = 0  # in a row
        self._retry_at = 0.0
        self._bound_waits()

    def _bound_waits(self) -> None:
        if isinstance(self._online_store, SqliteOnlineStore):
            try:
                conn = self._online_store._get_conn(self._config)
                conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            except Exception:  # unreadable now: try_read reports it and retries
                log.exception("could not open the online store")

    @property
    def available(self) -> bool:
        """False after a failed read, until a read succeeds again."""
        return self._failures == 0

    def try_read(self, lead_ids: list[str]) -> list[dict[str, Any] | None] | None:
        """`read`, or None when the online store cannot be read (now or, after a failure,
        until the backoff has passed). Never raises; the failure goes to the log."""
        now = time.monotonic()
        if self._failures and now < self._retry_at:
            return None
        try:
            out = self.read(lead_ids)
        except Exception:
            self._failures += 1
            self.failed_reads += 1
            wait = min(RETRY_MAX_SECONDS, RETRY_START_SECONDS * 2.0 ** (self._failures - 1))
            self._retry_at = now + wait
            if self._failures == 1:
                log.exception("online store read failed; scoring from requests only")
            else:
                log.warning("online store still unreadable (%d tries); next try in %.1f s",
                            self._failures, wait)
            return None
        if self._failures:
            log.info("online store readable again after %d failed tries", self._failures)
            self._failures = 0
        return out

    def read(self, lead_ids: list[str]) -> list[dict[str, Any] | None]:
        """One dict of feature values per lead (None values for nulls), or None for a lead
        the online store does not know (no row in any view)."""
        if isinstance(self._online_store, SqliteOnlineStore):
            return self._read_sqlite(lead_ids)
        return self._read_feast(lead_ids)

    def _read_feast(self, lead_ids: list[str]) -> list[dict[str, Any] | None]:
        """`read` through Feast's `online_read`, one call per view (every store but SQLite)."""
        keys = [
            EntityKeyProto(join_keys=[JOIN_KEY], entity_values=[ValueProto(string_val=lead)])
            for lead in lead_ids
        ]
        out: list[dict[str, Any] | None] = [None] * len(lead_ids)
        for v in self._views:
            rows = self._online_store.online_read(self._config, v.view, keys, v.features)
            for i, (ts, values) in enumerate(rows):
                if values is None or (_unset(ts) and not any(map(_has_value, values.values()))):
                    continue
                found = out[i]
                if found is None:
                    found = out[i] = {}
                for name in v.features:
                    proto = values.get(name)
                    found[name] = None if proto is None else _python_value(proto)
        return out

    def _read_sqlite(self, lead_ids: list[str]) -> list[dict[str, Any] | None]:
        """`read` from Feast's SQLite tables in one statement (see the module's docstring)."""
        keys = entity_keys(lead_ids, self._config.entity_key_serialization_version, check=False)
        statement = self._statements.get(len(keys))
        if statement is None:
            marks = ",".join("?" * len(keys))
            statement = self._statements[len(keys)] = " UNION ALL ".join(
                f'SELECT entity_key, feature_name, value FROM "{table}" '
                f"WHERE entity_key IN ({marks})"
                for table in self._tables
            )
        conn = self._online_store._get_conn(self._config)
        rows = conn.execute(statement, keys * len(self._tables)).fetchall()
        found: dict[bytes, dict[str, Any]] = {}
        wanted, decoded = self._wanted, self._decoded
        for key, name, value in rows:
            if name in wanted:
                python = decoded.get(value, _UNDECODED)
                if python is _UNDECODED:
                    python = _decode(value)
                    if type(python) in _IMMUTABLE:
                        if len(decoded) >= DECODED_CACHE_SIZE:
                            decoded.clear()
                        decoded[value] = python
                features = found.get(key)
                if features is None:
                    features = found[key] = dict.fromkeys(self.feature_names)
                features[name] = python
        return [found.get(key) for key in keys]  # a lead asked twice shares its dict

    def ping(self) -> bool:
        """Whether the online store can be read now (for /ready; honours the backoff)."""
        return self.try_read(["__ready_probe__"]) is not None
