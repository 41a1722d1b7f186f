"""Fixtures of the dbt layer: small generated raw data in temporary data folders.

Each dbt build costs seconds, so every module shares its builds through module-scoped fixtures.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _dbt_helpers import generate_small, small_settings

from ml.config import Settings


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Settings]:
    """A factory: a fresh data folder with small generated raw data, per name."""

    def make(name: str) -> Settings:
        settings = small_settings(tmp_path_factory.mktemp(name))
        generate_small(settings)
        return settings

    return make
