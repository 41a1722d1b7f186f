from pathlib import Path

import pytest

from ml.config import DEFAULT_CONFIG, load_settings
from ml.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_default_file_is_valid_and_keeps_the_original_thresholds():
    settings = load_settings(DEFAULT_CONFIG, env={})
    assert settings.monitoring.psi_threshold == 0.2
    assert settings.monitoring.auc_threshold == 0.75
    assert settings.monitoring.new_labels_threshold == 5000
    assert settings.registry.min_auc == 0.75
    assert settings.schedules.timezone == "Asia/Dubai"


def test_bad_value_names_the_key(tmp_path):
    path = _write(tmp_path, "registry:\n  min_auc: 7.5\n")
    with pytest.raises(ConfigError, match=r"registry\.min_auc"):
        load_settings(path, env={})


def test_unknown_key_names_the_key(tmp_path):
    path = _write(tmp_path, "training:\n  xgboost:\n    max_dept: 4\n")
    with pytest.raises(ConfigError, match=r"training\.xgboost\.max_dept: unknown key"):
        load_settings(path, env={})


def test_tiers_must_descend(tmp_path):
    path = _write(tmp_path, "scoring:\n  tiers: {A: 10, B: 20, C: 5}\n")
    with pytest.raises(ConfigError, match=r"scoring\.tiers"):
        load_settings(path, env={})


def test_environment_overrides_paths_and_urls(tmp_path):
    env = {
        "LEAD_SCORING_DATA_DIR": str(tmp_path),
        "LEAD_SCORING_CRM_URL": "postgresql+psycopg://crm@localhost/crm",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    settings = load_settings(DEFAULT_CONFIG, env=env)
    assert settings.paths.warehouse == tmp_path / "warehouse" / "warehouse.duckdb"
    assert settings.paths.crm_url.startswith("postgresql")
    assert settings.paths.mlflow_tracking_uri == "http://mlflow:5000"


def test_defaults_keep_the_crm_out_of_the_warehouse(tmp_path):
    settings = load_settings(DEFAULT_CONFIG, env={"LEAD_SCORING_DATA_DIR": str(tmp_path)})
    assert str(settings.paths.warehouse) not in settings.paths.crm_url
    assert settings.paths.crm_url == f"sqlite:///{tmp_path}/crm/crm.db"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})
