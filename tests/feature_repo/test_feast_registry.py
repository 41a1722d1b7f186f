"""Feast's registry on PostgreSQL (Feast's SQL registry) works as the default registry file does."""

from __future__ import annotations

import pyarrow.parquet as pq
from fabricate_marts import make_settings, write_marts

from ml import feature_store
from ml.online_refresh import refresh_online_store


def test_feast_registry_on_the_store(tmp_path, store_url, store_backend):
    settings = make_settings(tmp_path / "data")
    if store_backend == "postgres":  # SQLite's counterpart is the default: a registry file
        url = store_url("feast_registry")
        settings = settings.model_copy(
            update={"paths": settings.paths.model_copy(update={"feast_registry_url": url})}
        )
    config = feature_store.repo_config(settings)
    assert config.registry.registry_type == ("sql" if store_backend == "postgres" else "file")
    info = write_marts(settings.paths.marts_dir)
    names = feature_store.apply_feature_repo(settings)
    assert {"lead", "lead_profile", "lead_engagement", "lead_scoring"} <= set(names)
    stats = refresh_online_store(settings)

    store = feature_store.get_store(settings)  # a new process would read the same registry
    for view in store.list_feature_views():
        assert view.most_recent_end_time.replace(tzinfo=None) == info["as_of"]
    ids = pq.read_table(settings.paths.marts_dir / "lead_features_latest.parquet")["lead_id"]
    online = feature_store.online_features(settings, ids.to_pylist()[:5])
    assert stats.leads_read == len(ids) and online["lead_source"].notna().any()
    if store_backend == "postgres":
        assert not (settings.paths.feast_dir / "registry.db").exists()


