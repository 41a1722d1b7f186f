"""Fixtures: one filled set of stores per session (state.py) and an empty data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from state import build_state

from ml.config import Settings


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_state(tmp_path_factory.mktemp("dashboard-filled"))


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder
