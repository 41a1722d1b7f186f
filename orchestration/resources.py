"""Resources the assets receive: settings, dbt CLI, Feast, MLflow and the CRM database.

Each is a thin handle over the `ml` package, built from the one settings file, so a test can
point every store at a temporary folder by setting `data_dir`.
"""

from __future__ import annotations

import dagster as dg

from ml.config import Settings, load_settings
from orchestration.project import dbt_cli


class SettingsResource(dg.ConfigurableResource):
    """The platform settings (config/training_config.yaml unless `config_path` says otherwise)."""

    config_path: str | None = None
    data_dir: str | None = None

    def load(self) -> Settings:
        overrides = {"paths.data_dir": self.data_dir} if self.data_dir else None
        return load_settings(self.config_path, overrides=overrides)


class FeastResource(dg.ConfigurableResource):
    """The Feast feature store of the settings' data dir."""

    settings: SettingsResource

    def apply(self) -> list[str]:
        from ml.feature_store import apply_feature_repo

        return apply_feature_repo(self.settings.load())

    def refresh_online(self):  # noqa: ANN201 - RefreshStats
        from ml.online_refresh import refresh_online_store

        return refresh_online_store(self.settings.load())


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry (a local SQLite store unless the settings say otherwise)."""

    settings: SettingsResource

    @property
    def tracking_uri(self) -> str:
        return self.settings.load().paths.mlflow_tracking_uri


class CrmResource(dg.ConfigurableResource):
    """The CRM database where nightly scores land (its own file, never the warehouse)."""

    settings: SettingsResource

    @property
    def url(self) -> str:
        return self.settings.load().paths.crm_url


def build_resources(data_dir: str | None = None, config_path: str | None = None) -> dict:
    """All resources, wired to one settings resource."""
    settings = SettingsResource(config_path=config_path, data_dir=data_dir)
    return {
        "settings": settings,
        "dbt": dbt_cli(),
        "feast": FeastResource(settings=settings),
        "mlflow": MlflowResource(settings=settings),
        "crm": CrmResource(settings=settings),
    }
