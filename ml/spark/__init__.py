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


def spark_session(settings: Settings, app_name: str = "lead-scoring") -> SparkSession:
    """The process's Spark session, started with `settings.spark` (master, memory, shuffle
    partitions; session time zone UTC like the warehouse).

    Raises:
        ConfigError: pyspark or Java is missing (the message says how to install them).
    """
    if not spark_available():
        raise ConfigError(
            "engine: spark needs pyspark (the `spark` extra) and Java 17 "
            "(Debian openjdk-17-jre-headless; `make demo-spark` installs it when absent)"
        )
    from pyspark.sql import SparkSession

    spark = settings.spark
    # PySpark starts its Python workers with $PYSPARK_PYTHON (default: `python3` on PATH, which
    # may lack this environment's packages)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local_dir = Path(spark.warehouse_dir) / "tmp"
    local_dir.mkdir(parents=True, exist_ok=True)
    return (
        SparkSession.builder.master(spark.master)
        .appName(app_name)
        .config("spark.driver.memory", spark.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.local.dir", str(local_dir))
        .config("spark.ui.enabled", "false")
        # Python workers run this interpreter and import this checkout's `ml` (the scorer's
        # classes), whatever `python3` on PATH is
        .config("spark.pyspark.python", sys.executable)
        .config("spark.executorEnv.PYTHONPATH", str(PROJECT_ROOT))
        .getOrCreate()
    )
