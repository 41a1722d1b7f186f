"""Session fixtures: one small generated dataset, built once through the real pipeline.

Each layer's fixture builds on the one before (raw files → warehouse + marts → Feast store),
so a test asks for the deepest layer it needs and pays only for that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.config import Settings, load_settings

# Small but enough for a time-based split with a few hundred positives in the test window.
TEST_GENERATOR = {"generator.n_leads": 4000, "generator.days": 180, "generator.seed": 7}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings whose every generated file lives under `data_dir`."""
    return load_settings(overrides={"paths.data_dir": str(data_dir), **TEST_GENERATOR, **overrides})


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
