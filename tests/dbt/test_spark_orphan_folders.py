"""A Spark build killed while it writes a table leaves the table's folder behind with no table in
the metastore; the next build must still create that table (dbt_project/macros/orphan_folders.sql)
instead of failing with LOCATION_ALREADY_EXISTS.

The kill is real: dbt-spark runs a probe model (in a copy of the project) whose query blocks
inside the write job until the test kills dbt and its JVM, so the folder holds Spark's
half-written `_temporary` tree; then the same model is built again, without blocking. Marked
`spark` (Java 17 and the `spark` extra; CI's spark step).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from ml.config import Settings, load_settings
from ml.spark import spark_available
from ml.warehouse import SPARK_SCHEMA, _dbt_executable, dbt_env, dbt_vars

pytestmark = pytest.mark.spark

# Blocks every row in the write job while the var is set (Thread.sleep through reflect), so the
# build is killed half-way through writing the table, deterministically; a plain select without it.
PROBE = """{{ config(materialized='table') }}
select lead_id
{%- if var('block_while_writing', false) %},
    reflect('java.lang.Thread', 'sleep', cast(600000 as bigint)) as slept
{%- endif %}
from {{ source('crm', 'leads') }}
"""


def _dbt(settings: Settings, project: Path, block: bool) -> subprocess.Popen[bytes]:
    work = Path(settings.paths.warehouse).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    variables = dbt_vars(settings) | {"block_while_writing": block}
    log = (work / f"dbt_{'blocked' if block else 'again'}.out").open("wb")
    return subprocess.Popen(
        [_dbt_executable(), "run", "--select", "orphan_probe", "--vars", json.dumps(variables)],
        cwd=project,
        env={**os.environ, **dbt_env(settings), "DBT_TARGET_PATH": str(work / "dbt_target"),
             "DBT_LOG_PATH": str(work / "dbt_logs"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # dbt and its JVM in one process group, killed together
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(600):  # the JVM (same group) must be gone before the metastore is reopened
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("dbt's JVM outlived SIGKILL")


@pytest.fixture()
def spark_settings(small_data: Callable[[str], Settings]) -> Settings:
    if not spark_available():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI runs the Spark tests: Spark needs Java 17 and pyspark")
        pytest.skip("Spark needs Java 17 and pyspark (the `spark` extra; make demo-spark)")
    duck = small_data("orphan_raw")
    return load_settings(overrides={
        "engine": "spark",
        "spark.small_data": True,
        "paths.data_dir": str(duck.paths.data_dir.parent / "orphan_spark"),
        "paths.raw_dir": str(duck.paths.raw_dir),
    })


def test_a_build_killed_mid_write_does_not_block_the_next(
    spark_settings: Settings, tmp_path: Path
) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(spark_settings.dbt_project_dir, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (project / "models" / "orphan_probe.sql").write_text(PROBE)
    folder = (Path(spark_settings.spark.warehouse_dir).resolve() / "tables"
              / f"{SPARK_SCHEMA}.db" / "orphan_probe")

    blocked = _dbt(spark_settings, project, block=True)
    try:
        deadline = time.monotonic() + 600
        while not (folder / "_temporary").is_dir():
            assert blocked.poll() is None, "the blocked build ended before it wrote the table"
            assert time.monotonic() < deadline, "the table's write job never started"
            time.sleep(0.2)
    finally:
        _kill_group(blocked)
    assert any(folder.iterdir()), "the killed build left no folder behind: nothing to prove"

    again = _dbt(spark_settings, project, block=False)
    again.wait(timeout=900)
    log = (Path(spark_settings.paths.warehouse).resolve().parent / "dbt_again.out").read_text()
    assert again.returncode == 0, log[-3000:]
    assert "LOCATION_ALREADY_EXISTS" not in log
    assert not (folder / "_temporary").exists()
    rows = duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()
    with (Path(spark_settings.paths.raw_dir) / "leads.csv").open() as fh:
        raw_rows = sum(1 for _ in fh) - 1
    assert rows == [(raw_rows,)]
