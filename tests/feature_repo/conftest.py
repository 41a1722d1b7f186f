"""Fixtures: a temporary data dir with fabricated marts and the Feast repo applied to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fabricate_marts import make_settings, write_marts

from ml.config import Settings
from ml.feature_store import apply_feature_repo


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    """Settings over a data dir with marts written and the repo applied (read-only tests)."""
    settings = make_settings(tmp_path_factory.mktemp("feast_data"))
    info = write_marts(settings.paths.marts_dir)
    apply_feature_repo(settings)
    return settings, info


@pytest.fixture()
def fresh(tmp_path: Path, online_store_url) -> tuple[Settings, dict[str, Any]]:
    """Like `applied`, but private to one test (for tests that write), on each online store
    (SQLite, Redis)."""
    settings = make_settings(tmp_path / "data", online_store_url())
    info = write_marts(settings.paths.marts_dir)
    apply_feature_repo(settings)
    return settings, info
