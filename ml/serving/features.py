"""Online features for the service, read through the Feast online store's own read path.

`FeatureStore.get_online_features` resolves the feature service, its views and their entities
on every call (about 0.3 ms); the service cannot afford that per request. `OnlineFeatureReader`
resolves them once at start-up and then calls the online store's `online_read` per view, the
same method Feast's lookup ends in, so the features still come from the Feast online store
(SQLite here, Redis in production) and are decoded from Feast's own ValueProtos.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from feast import FeatureView
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from ml.config import Settings
from ml.feature_store import feature_service, get_store

log = logging.getLogger(__name__)

JOIN_KEY = "lead_id"


def _python_value(proto: ValueProto) -> Any:
    kind = proto.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(proto, kind)


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
        self._online_store = store._get_provider().online_store  # Feast's own read path
        self._views = [
            _View(store.get_feature_view(p.name), [f.name for f in p.features])
            for p in service.feature_view_projections
        ]
        self.feature_names: list[str] = [f for v in self._views for f in v.features]

    def read(self, lead_ids: list[str]) -> list[dict[str, Any] | None]:
        """One dict of feature values per lead (None values for nulls), or None for a lead
        the online store does not know (no row in any view)."""
        keys = [
            EntityKeyProto(join_keys=[JOIN_KEY], entity_values=[ValueProto(string_val=lead)])
            for lead in lead_ids
        ]
        out: list[dict[str, Any] | None] = [None] * len(lead_ids)
        for v in self._views:
            rows = self._online_store.online_read(self._config, v.view, keys, v.features)
            for i, (_ts, values) in enumerate(rows):
                if values is None:
                    continue
                found = out[i]
                if found is None:
                    found = out[i] = {}
                for name in v.features:
                    proto = values.get(name)
                    found[name] = None if proto is None else _python_value(proto)
        return out

    def ping(self) -> None:
        """Raise if the online store cannot be read (for /ready)."""
        self.read(["__ready_probe__"])
