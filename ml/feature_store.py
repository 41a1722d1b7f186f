"""The Feast feature store, configured once from `Settings` rather than from the working directory.

`feature_repo/feature_store.yaml` holds the store's shape (project, provider, offline store, key
serialization); the settings name the registry (`paths.feast_registry_url`: a file, or Feast's SQL
registry on PostgreSQL) and the online store (`paths.online_store_url`: SQLite or Redis), and the
definitions in feature_repo/*.py are executed with the same settings, so their sources read the
marts folder the settings name. The same code serves the default data dir, a temporary one and
production servers; moving to a server is a setting, never code.
"""

from __future__ import annotations

import importlib.util
import logging
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, FileSource, RepoConfig
from feast.data_source import DataSource
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete

from ml import stores
from ml.config import Settings, load_settings
from ml.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

ONLINE_STORE_FILE = "online_store.db"  # the default online store's file in feast_dir (ml.config)
REDIS_TIMEOUT_S = 2  # socket timeouts of Feast's Redis client


def online_store_config(url: str) -> dict[str, Any]:
    """Feast's `online_store` section for `paths.online_store_url`.

    `sqlite:///path` is Feast's SQLite store; `redis://[user:password@]host:port/db` (`rediss://`
    for TLS) is its Redis store, whose connection string is `host:port,db=N,...`.
    """
    if url.startswith("sqlite:///"):
        return {"type": "sqlite", "path": url.removeprefix("sqlite:///")}
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(
            f"paths.online_store_url {url!r}: use sqlite:///path/online_store.db or "
            "redis://host:6379/0"
        )
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ConfigError(f"paths.online_store_url {url!r}: the Redis database must be a number")
    # A server that stops answering fails a read in seconds rather than hanging the service
    # (which then scores from the request and retries with a backoff, ml/serving/features.py).
    connection = [
        f"{parts.hostname}:{parts.port or 6379}",
        f"db={db}",
        f"socket_timeout={REDIS_TIMEOUT_S}",
        f"socket_connect_timeout={REDIS_TIMEOUT_S}",
    ]
    if parts.username:
        connection.append(f"username={unquote(parts.username)}")
    if parts.password:
        connection.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        connection.append("ssl=true")
    return {"type": "redis", "connection_string": ",".join(connection)}


def registry_config(url: str, cache_ttl_seconds: int) -> dict[str, Any]:
    """Feast's `registry` section for `paths.feast_registry_url`: a protobuf file, or Feast's
    SQL registry on PostgreSQL (its tables are created on first use)."""
    if "://" not in url:
        return {"registry_type": "file", "path": url, "cache_ttl_seconds": cache_ttl_seconds}
    sa_url = stores.parse_url(url)
    if sa_url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"paths.feast_registry_url {url!r}: a file path or postgresql+psycopg://... only"
        )
    return {
        "registry_type": "sql",
        "path": sa_url.render_as_string(hide_password=False),
        "cache_ttl_seconds": cache_ttl_seconds,
        "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
    }


def repo_config(settings: Settings) -> RepoConfig:
    """Feast's RepoConfig: the shape of feature_store.yaml (project, provider, offline store,
    key serialization) with the registry and online store the settings name
    (`paths.feast_registry_url`, `paths.online_store_url`)."""
    yaml_path = settings.feature_repo / "feature_store.yaml"
    if not yaml_path.is_file():
        raise ConfigError(f"Feast repo config not found: {yaml_path}")
    raw: dict[str, Any] = yaml.safe_load(yaml_path.read_text()) or {}
    ttl = int(raw.get("registry", {}).get("cache_ttl_seconds", 60))
    raw["registry"] = registry_config(str(settings.paths.feast_registry_url), ttl)
    raw["online_store"] = online_store_config(str(settings.paths.online_store_url))
    if settings.engine == "spark":
        # engine: spark: Feast's Spark offline store joins point in time (sources become
        # SparkSources in load_repo_contents); the online store stays what the settings name
        raw["offline_store"] = {"type": "spark", "spark_conf": spark_conf(settings)}
    config = RepoConfig(**raw)
    config.repo_path = settings.feature_repo
    return config


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark session Feast's Spark offline store starts: the project's one session
    configuration (ml.spark.session_conf), with Python workers of this interpreter."""
    from ml.spark import session_conf, use_this_python

    use_this_python()
    conf = session_conf(settings)
    Path(conf["spark.local.dir"]).mkdir(parents=True, exist_ok=True)
    return conf


def get_store(settings: Settings) -> FeatureStore:
    """A FeatureStore over the registry and online store under `settings.paths.feast_dir`."""
    settings.paths.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings))


# The settings of the apply in progress, which feature_repo/*.py declares its objects from.
_DEFINING: ContextVar[Settings | None] = ContextVar("feature_repo_settings", default=None)


def definition_settings() -> Settings:
    """The settings feature_repo/*.py reads (its vocabulary, TTL, service name): those given to
    `load_repo_contents`, or `load_settings()` when the `feast` CLI imports the repo itself."""
    return _DEFINING.get() or load_settings()


def _load_module(path: Path) -> ModuleType:
    # A fresh module per call (not cached in sys.modules): the objects it defines are built from
    # the settings of this call (definition_settings), and another call must get its own.
    spec = importlib.util.spec_from_file_location(f"_feature_repo_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import Feast definitions from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_repo_contents(settings: Settings) -> RepoContents:
    """Collect the Feast objects defined in feature_repo/*.py, like `feast apply` does, built
    from `settings` (so their sources read `settings.paths.marts_dir`)."""
    entities: list[Entity] = []
    sources: list[DataSource] = []
    views: list[FeatureView] = []
    services: list[FeatureService] = []

    def add(bucket: list[Any], obj: Any) -> None:
        if not any(obj is seen for seen in bucket):
            bucket.append(obj)

    for path in sorted(settings.feature_repo.glob("*.py")):
        if path.name == "__init__.py":
            continue
        token = _DEFINING.set(settings)
        try:
            module = _load_module(path)
        finally:
            _DEFINING.reset(token)
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, Entity):
                add(entities, obj)
            elif isinstance(obj, FeatureView):
                add(views, obj)
                if obj.batch_source is not None:
                    add(sources, obj.batch_source)
            elif isinstance(obj, DataSource):
                add(sources, obj)
            elif isinstance(obj, FeatureService):
                add(services, obj)

    if settings.engine == "spark":
        sources = _as_spark_sources(sources, views)

    return RepoContents(
        projects=[],
        data_sources=sources,
        feature_views=views,
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=entities,
        feature_services=services,
        permissions=[],
    )


def _as_spark_sources(sources: list[DataSource], views: list[FeatureView]) -> list[DataSource]:
    """The file sources as SparkSources over the same Parquet marts (same names, timestamps and
    tags), the views re-pointed at them: what Feast's Spark offline store reads."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    replaced: dict[int, DataSource] = {}
    for source in sources:
        if isinstance(source, FileSource):
            replaced[id(source)] = SparkSource(
                name=source.name,
                path=source.path,
                file_format="parquet",
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column,
                field_mapping=source.field_mapping,
                description=source.description,
                tags=source.tags,
                owner=source.owner,
            )
    for view in views:
        if view.batch_source is not None and id(view.batch_source) in replaced:
            view.batch_source = view.data_source = replaced[id(view.batch_source)]
    return [replaced.get(id(source), source) for source in sources]


def apply_feature_repo(settings: Settings) -> list[str]:
    """Register the definitions of feature_repo/ (like `feast apply`) and create online tables.

    Objects in the registry that the repo no longer defines are deleted, as `feast apply` does.

    Returns:
        The names of the objects applied (entities, sources, views, services).
    """
    store = get_store(settings)
    repo = load_repo_contents(settings)
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    # extract_objects_for_apply_delete returns only new or changed objects; apply all of them so
    # the returned names describe the repo, and re-applying unchanged objects is a no-op.
    objects = [*repo.entities, *repo.data_sources, *repo.feature_views, *repo.feature_services]
    store.apply(objects, objects_to_delete=to_delete, partial=False)
    names = [obj.name for obj in objects]
    logger.info(
        "applied %d Feast objects (%d new or changed, %d deleted) to %s",
        len(names),
        len(to_apply),
        len(to_delete),
        settings.paths.feast_dir,
    )
    return names


def feature_service(store: FeatureStore, settings: Settings) -> FeatureService:
    """The feature service the model uses (`settings.features.feature_service`)."""
    name = settings.features.feature_service
    try:
        return store.get_feature_service(name)
    except Exception as exc:  # Feast raises its own FeatureServiceNotFoundException
        raise ConfigError(
            f"feature service {name!r} is not in the Feast registry under "
            f"{settings.paths.feast_dir}; run `lead-scoring features apply` first"
        ) from exc


def feature_names(store: FeatureStore, settings: Settings) -> list[str]:
    """The model's features in service order, without feature-view prefixes."""
    service = feature_service(store, settings)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def _utc(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts)
    return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


def historical_features(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of the service for each (lead_id, event_timestamp) row.

    Args:
        entity_df: `lead_id` and `event_timestamp` (naive means UTC) plus any columns to carry
            through, such as labels.

    Returns:
        entity_df's rows (in their original order) with one column per model feature; features
        are null where the lead had no snapshot within one TTL before the timestamp.
    """
    missing = {"lead_id", "event_timestamp"} - set(entity_df.columns)
    if missing:
        raise DataError(f"entity_df lacks column(s) {sorted(missing)}")
    source = settings.paths.marts_dir / "lead_features.parquet"
    if not source.is_file():
        raise DataError(f"feature mart not found: {source}; run `dbt build` first")
    store = get_store(settings)
    # Feast returns rows in its own order; a row number restores the caller's.
    entities = entity_df.assign(event_timestamp=_utc(entity_df["event_timestamp"]))
    entities["_row"] = range(len(entities))
    job = store.get_historical_features(
        entity_df=entities, features=feature_service(store, settings), full_feature_names=False
    )
    out = job.to_df().sort_values("_row").drop(columns="_row").reset_index(drop=True)
    # the Spark offline store hands back naive timestamps (UTC); the other stores UTC-aware ones
    out["event_timestamp"] = _utc(out["event_timestamp"])
    return out


def online_features(settings: Settings, lead_ids: list[str]) -> pd.DataFrame:
    """The service's features of each lead from the online store (nulls for unknown leads).

    Returns:
        One row per requested lead, in request order: `lead_id`, then the features in service order.
    """
    store = get_store(settings)
    service = feature_service(store, settings)
    response = store.get_online_features(
        features=service, entity_rows=[{"lead_id": lead_id} for lead_id in lead_ids]
    )
    return response.to_df()[["lead_id", *feature_names(store, settings)]]


def materialize_stock(settings: Settings, end: datetime) -> dict[str, Any]:
    """Stock `feast materialize` of the service's views over (end - TTL, end], for comparison.

    The window is one TTL (the snapshot interval) so it holds each open lead's latest snapshot;
    leads that closed inside that window are loaded too, because stock Feast cannot delete.
    """
    store = get_store(settings)
    service = feature_service(store, settings)
    views = [store.get_feature_view(p.name) for p in service.feature_view_projections]
    ttl = max((v.ttl for v in views if v.ttl), default=timedelta(days=7))
    end = end if end.tzinfo else end.replace(tzinfo=UTC)  # naive means UTC, as in the marts
    start = end - ttl
    store.materialize(start_date=start, end_date=end, feature_views=[v.name for v in views])
    return {"feature_views": [v.name for v in views], "start": start, "end": end}
