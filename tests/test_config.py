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


def test_monotone_patterns_expand_and_a_typo_is_refused(tmp_path):
    monotone = load_settings(env={}).training.monotone
    assert monotone(["n_email_click_7d", "engagement_score", "days_since_created"]) == [1, 1, 0]
    path = _write(tmp_path, "training:\n  monotone_increasing: [engagment_score]\n")
    with pytest.raises(ConfigError, match=r"monotone_increasing matches no feature.*engagment"):
        load_settings(path, env={})


@pytest.mark.parametrize(("search", "expected"), [
    ("[{max_dept: 2}]", r"request_xgboost_search entry \{'max_dept': 2\}.*max_dept"),
    ("[{max_depth: 0}]", r"request_xgboost_search entry \{'max_depth': 0\}.*max_depth"),
    ("[]", r"request_xgboost_search needs at least one entry"),
])
def test_a_search_entry_must_be_valid_xgboost_settings(tmp_path, search, expected):
    path = _write(tmp_path, f"training:\n  request_xgboost_search: {search}\n")
    with pytest.raises(ConfigError, match=expected):
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


# --- malformed settings files: one message naming the key or the line, no traceback -----------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML syntax: the line and column, and what was open
        (
            "registry:\n  min_auc: 0.8\n  model_name: [unclosed\n",
            r"not valid YAML at line 4, column 1: .*flow sequence that starts at line 3",
        ),
        ("registry:\n\tmin_auc: 0.8\n", r"not valid YAML at line 2, column 1: .*'\\t'"),
        # a key given twice: YAML keeps the last silently
        (
            "registry:\n  min_auc: 0.8\nregistry:\n  min_auc: 0.9\n",
            r"line 3, column 1: key 'registry' is given twice \(first on line 1\)",
        ),
        # wrong types: the dotted key, its line, the value
        (
            "generator:\n  seed: 1\n  n_leads: lots\n",
            r"generator\.n_leads: Input should be a valid integer.*'lots'\) \(line 3\)",
        ),
        (
            "alerting:\n  channels:\n    email:\n      starttls: maybe\n",
            r"email\.starttls: Input should be a valid boolean.* \(line 4\)",
        ),
        ("scoring:\n  tiers: [1, 2]\n", r"scoring\.tiers: Input should be .* \(line 2\)"),
        # an unknown nested key
        (
            "alerting:\n  channels:\n    email:\n      smtp_hots: mail\n",
            r"alerting\.channels\.email\.smtp_hots: unknown key .* \(line 4\)",
        ),
        # empty, comments only, not a mapping
        ("", r"is empty"),
        ("# nothing but a comment\n", r"is empty"),
        ("- paths\n- training\n", r"mapping of sections at the top level .*got a list"),
    ],
    ids=[
        "syntax",
        "tab",
        "duplicate-key",
        "wrong-type",
        "wrong-bool",
        "wrong-section-type",
        "unknown-nested-key",
        "empty",
        "comments-only",
        "top-level-list",
    ],
)
def test_malformed_settings_file_is_one_config_error(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(path, env={})
    assert str(path) in str(caught.value)
    assert len(str(caught.value)) < 400  # one message, not a dump of the input


def test_unreadable_settings_files_are_config_errors(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe registry")
    with pytest.raises(ConfigError, match=r"binary\.yaml is not UTF-8 text"):
        load_settings(binary, env={})
    with pytest.raises(ConfigError, match=r"is not a file"):
        load_settings(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"settings file not found: .*nope\.yaml"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_environment_override_into_a_scalar_names_the_key(tmp_path):
    path = _write(tmp_path, "paths: 5\n")
    with pytest.raises(ConfigError, match=r"paths: must be a section .*\$LEAD_SCORING_DATA_DIR"):
        load_settings(path, env={"LEAD_SCORING_DATA_DIR": str(tmp_path)})
    # a section left empty still takes the override
    empty_section = _write(tmp_path, "paths:\n")
    settings = load_settings(empty_section, env={"LEAD_SCORING_DATA_DIR": str(tmp_path)})
    assert settings.paths.data_dir == tmp_path


def test_cli_prints_a_bad_settings_file_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from ml.cli import app

    path = _write(tmp_path, "monitoring:\n  auc_threshold: high\n")
    result = CliRunner().invoke(app, ["config", "--config", str(path)])
    assert result.exit_code == 2
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "monitoring.auc_threshold: Input should be" in output and "(line 2)" in output
    assert "Traceback" not in output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), not a crash
