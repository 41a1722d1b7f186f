"""Session fixtures: one small generated dataset, built once through the real pipeline.

Each layer's fixture builds on the one before (raw files → warehouse + marts → Feast store),
so a test asks for the deepest layer it needs and pays only for that.
"""

from __future__ import annotations

import pytest
from pipeline_data import make_settings

from ml.config import Settings


@pytest.fixture(scope="session")
def pipeline_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def raw_data(pipeline_settings: Settings):
    from ml.data.generator import generate_from_settings

    return generate_from_settings(pipeline_settings)


@pytest.fixture(scope="session")
def warehouse(pipeline_settings: Settings, raw_data):
    from ml.warehouse import build_warehouse

    return build_warehouse(pipeline_settings)


@pytest.fixture(scope="session")
def feature_store(pipeline_settings: Settings, warehouse):
    from ml.feature_store import apply_feature_repo, get_store
    from ml.online_refresh import refresh_online_store

    apply_feature_repo(pipeline_settings)
    refresh_online_store(pipeline_settings)
    return get_store(pipeline_settings)
