"""The `engine` setting: validated on load, overridable by LEAD_SCORING_ENGINE, and followed by
every dbt call (the profile target and the Spark session's folders come from dbt_env)."""

from __future__ import annotations

import pytest

from ml.config import load_settings
from ml.errors import ConfigError
from ml.warehouse import dbt_env, thread_args


def test_default_engine_is_duckdb_and_dbt_uses_the_duckdb_target(tmp_path) -> None:
    settings = load_settings(overrides={"paths.data_dir": str(tmp_path)}, env={})
    assert settings.engine == "duckdb"
    env = dbt_env(settings)
    assert env["LEAD_SCORING_DBT_TARGET"] == "dev"
    assert "DBT_EXCLUDE_RESOURCE_TYPES" not in env


def test_unknown_engine_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"engine: Input should be 'duckdb' or 'spark'"):
        load_settings(overrides={"engine": "flink"}, env={})


def test_spark_engine_from_the_environment_points_dbt_at_spark(tmp_path) -> None:
    settings = load_settings(
        overrides={"paths.data_dir": str(tmp_path)},
        env={"LEAD_SCORING_ENGINE": "spark", "LEAD_SCORING_SPARK_MASTER": "local[1]"},
    )
    assert settings.engine == "spark"
    assert settings.spark.warehouse_dir == tmp_path / "warehouse" / "spark"
    env = dbt_env(settings)
    assert env["LEAD_SCORING_DBT_TARGET"] == "spark"
    assert env["LEAD_SCORING_SPARK_MASTER"] == "local[1]"
    assert env["LEAD_SCORING_SPARK_WAREHOUSE"] == str(tmp_path / "warehouse" / "spark")
    assert env["DBT_EXCLUDE_RESOURCE_TYPES"] == "unit_test"
    assert env["LEAD_SCORING_SPARK_SMALL_DATA"] == "false"


def test_small_data_tunes_dbt_and_the_project_sessions_alike(tmp_path) -> None:
    """spark.small_data reaches both the dbt profile (through dbt_env) and the sessions that
    scoring and Feast start (session_conf); off by default, where Spark keeps its defaults."""
    from ml.spark import SMALL_DATA_CONF, session_conf

    overrides = {"paths.data_dir": str(tmp_path), "engine": "spark"}
    default = load_settings(overrides=overrides, env={})
    assert not SMALL_DATA_CONF.keys() & session_conf(default).keys()
    small = load_settings(overrides=overrides | {"spark.small_data": True}, env={})
    assert session_conf(small).items() >= SMALL_DATA_CONF.items()
    assert session_conf(small)["spark.sql.session.timeZone"] == "UTC"
    assert dbt_env(small)["LEAD_SCORING_SPARK_SMALL_DATA"] == "true"


def test_dbt_threads_follow_the_raw_files_size_unless_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "activities.csv").write_bytes(b"x" * 3 * 2**20)  # 3 MB of raw files
    base = {"paths.data_dir": str(tmp_path)}

    def threads(**overrides: object) -> list[str]:
        return thread_args(load_settings(overrides={**base, **overrides}, env={}))

    assert threads() == ["--threads", "2"]  # small raw files: one thread per core
    assert threads(**{"duckdb.auto_threads_max_raw_mb": 2}) == ["--threads", "1"]
    assert threads(**{"duckdb.dbt_threads": 3}) == ["--threads", "3"]
    assert threads(engine="spark") == []  # the Spark profile sets its own


def test_dbt_threads_below_one_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"duckdb.dbt_threads"):
        load_settings(overrides={"duckdb.dbt_threads": 0}, env={})
