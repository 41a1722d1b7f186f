"""The Spark side of `engine: spark`: one way to start a session with the settings, and the
Spark batch scoring job (ml.spark.scoring). Importing this package does not import pyspark."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ml.config import PROJECT_ROOT, Settings
from ml.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_available() -> bool:
    """True when pyspark is installed and a `java` is on PATH (Spark's JVM)."""
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


# `spark.small_data: true` (ml/config.py says why); dbt_project/profiles.yml sets the same
SMALL_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
    # C1 only; a C1-only JVM reserves a 48 MB code cache (not tiered's 240 MB), which Spark's
    # method handles filled in CI ("Out of space in CodeCache for method handle intrinsic")
    "spark.driver.extraJavaOptions": (
        "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
    ),
}


def session_conf(settings: Settings) -> dict[str, str]:
    """The configuration of every Spark session the project starts (Spark batch scoring here,
    Feast's Spark offline store through its `spark_conf`): `settings.spark` (master, memory,
    shuffle partitions, small data), the session time zone UTC like the warehouse, Parquet
    timestamps as microseconds, and Python workers that import this checkout's `ml` (the
    scorer's classes).

    Whoever starts the session first in a process fixes it (`getOrCreate` keeps the first one's
    static settings), so both starters pass the same configuration.
    """
    spark = settings.spark
    return {
        "spark.master": spark.master,
        "spark.driver.memory": spark.driver_memory,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.local.dir": str(Path(spark.warehouse_dir) / "tmp"),
        "spark.ui.enabled": "false",
        "spark.executorEnv.PYTHONPATH": str(PROJECT_ROOT),
    } | (SMALL_DATA_CONF if spark.small_data else {})


def use_this_python() -> None:
    """Make PySpark start its Python workers with this interpreter (pandas, xgboost and `ml`
    installed), unless PYSPARK_PYTHON names one: PySpark reads the variable when a session
    starts, and its default, `python3` on PATH, may lack this environment's packages."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def spark_session(settings: Settings, app_name: str = "lead-scoring") -> SparkSession:
    """The process's Spark session, started with `session_conf(settings)`.

    Raises:
        ConfigError: pyspark or Java is missing (the message says how to install them).
    """
    if not spark_available():
        raise ConfigError(
            "engine: spark needs pyspark (the `spark` extra) and Java 17 "
            "(Debian openjdk-17-jre-headless; `make demo-spark` installs it when absent)"
        )
    from pyspark.sql import SparkSession

    use_this_python()
    conf = session_conf(settings)
    Path(conf["spark.local.dir"]).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
