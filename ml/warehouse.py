"""Build the warehouse: run dbt over the raw CSVs, then publish the marts as Parquet.

The engine is the setting `engine`: dbt-duckdb writes one DuckDB file; dbt-spark (`--target
spark`, an in-process Spark session) writes one Parquet folder per table under
`spark.warehouse_dir`. Either way the marts leave as the same Parquet files, and what reads the
warehouse here reads it through DuckDB (the Spark tables as read-only views over their folders).

dbt is the only writer of the warehouse; everything here that reads it opens it
read-only and briefly. The marts are exported by Python only after `dbt build` is green, not by a
dbt post-hook: a post-hook runs before the tests of its model, so a failing test would already have
published bad marts. Here a failed build raises before the export, and the previous good Parquet
files stay in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from ml.config import Settings
from ml.contract import RAW_COLUMNS, REQUIRED_RAW_FILES
from ml.errors import DataError

logger = logging.getLogger(__name__)

# every raw file of the contract; an optional one (lead_attribute_changes) may be missing and
# then counts as empty
RAW_FILES = tuple(RAW_COLUMNS)
MARTS = ("lead_features", "lead_features_latest", "lead_labels", "lead_conversions")
# dbt subcommands that accept --vars
_THREADED_COMMANDS = {"build", "run", "test", "seed", "snapshot"}
_VARS_COMMANDS = {
    "build",
    "run",
    "test",
    "compile",
    "parse",
    "seed",
    "snapshot",
    "show",
    "list",
    "ls",
    "docs",
    "run-operation",
}
_FAILED_STATUSES = {"error", "fail", "runtime error"}


@dataclass(frozen=True)
class DbtRunResult:
    """Outcome of one dbt invocation."""

    args: list[str]
    returncode: int
    seconds: float
    output: str
    failed_nodes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class BuildSummary:
    """What a warehouse build read, kept, rejected and published."""

    as_of: datetime | None
    raw_rows: dict[str, int]
    accepted_rows: dict[str, int]
    rejected_rows: dict[str, int]
    mart_rows: dict[str, int]
    marts: dict[str, Path]
    dbt_seconds: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (paths and timestamps as text) for the CLI summary."""
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        out["marts"] = {name: str(path) for name, path in self.marts.items()}
        return out


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment variables dbt needs: absolute warehouse and raw paths, and the profiles dir.

    profiles.yml and the sources read these through `env_var()`; absolute paths make the build
    independent of dbt's working directory.
    """
    env = {
        "LEAD_SCORING_WAREHOUSE": str(Path(settings.paths.warehouse).resolve()),
        "LEAD_SCORING_RAW_DIR": str(Path(settings.paths.raw_dir).resolve()),
        "DBT_PROFILES_DIR": str(settings.dbt_project_dir),
        "LEAD_SCORING_DBT_TARGET": "dev",
    }
    if settings.engine == "spark":
        spark = settings.spark
        env |= {
            # the profile's target follows the engine, so every dbt call (this module's,
            # Dagster's DbtCliResource) builds where the settings say
            "LEAD_SCORING_DBT_TARGET": "spark",
            # the unit tests check the models' logic with DuckDB-typed fixtures; the DuckDB
            # build runs them, the parity tests prove the Spark build computes the same marts
            "DBT_EXCLUDE_RESOURCE_TYPES": "unit_test",
            "LEAD_SCORING_SPARK_WAREHOUSE": str(Path(spark.warehouse_dir).resolve()),
            "LEAD_SCORING_SPARK_MASTER": spark.master,
            "LEAD_SCORING_SPARK_DRIVER_MEMORY": spark.driver_memory,
            "LEAD_SCORING_SPARK_SHUFFLE_PARTITIONS": str(spark.shuffle_partitions),
            "LEAD_SCORING_SPARK_SMALL_DATA": "true" if spark.small_data else "false",
        }
    return env


def dbt_threads(settings: Settings) -> int | None:
    """The threads of a DuckDB build (`duckdb.dbt_threads`; auto from the raw files' size), or
    None for the Spark target, whose profile sets its own."""
    if settings.engine != "duckdb":
        return None
    threads = settings.duckdb.dbt_threads
    if threads != "auto":
        return threads
    raw = Path(settings.paths.raw_dir)
    size = sum(p.stat().st_size for p in raw.rglob("*.csv")) if raw.is_dir() else 0
    small = size < settings.duckdb.auto_threads_max_raw_mb * 2**20
    return (os.cpu_count() or 1) if small else 1


def thread_args(settings: Settings) -> list[str]:
    """`--threads N` for a dbt command that runs models or tests (empty: the profile's)."""
    threads = dbt_threads(settings)
    return [] if threads is None else ["--threads", str(threads)]


@contextlib.contextmanager
def dbt_environment(settings: Settings) -> Iterator[None]:
    """`dbt_env(settings)` set in this process for the block, for a dbt started inside it
    (Dagster's DbtCliResource passes the current environment on), then restored.

    Parsing the manifest and building under the same variables also keeps dbt's partial parse
    valid: the profile and the sources read them, and a change in either reparses everything.
    """
    values = dbt_env(settings)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _utc_naive(as_of: datetime | date) -> datetime:
    """A date or datetime as a naive UTC datetime (the warehouse stores UTC without offsets)."""
    if not isinstance(as_of, datetime):
        return datetime(as_of.year, as_of.month, as_of.day)
    if as_of.tzinfo is not None:
        return as_of.astimezone(UTC).replace(tzinfo=None)
    return as_of


def dbt_vars(settings: Settings, as_of: datetime | date | None = None) -> dict[str, Any]:
    """The dbt vars of a build, from `settings.features`, the vocabulary and the point in time.

    Args:
        as_of: pin the build to this instant (naive = UTC). None: rows after the clock are
            rejected and the snapshots end at midnight after the latest accepted timestamp.
    """
    features = settings.features
    return {
        "snapshot_interval_days": features.snapshot_interval_days,
        "max_lead_age_days": features.max_lead_age_days,
        "label_window_days": features.label_window_days,
        "max_rejected_share": features.max_rejected_share,
        "as_of": _utc_naive(as_of).isoformat(sep=" ") if as_of is not None else None,
        **settings.vocabulary.dbt_vars(),
    }


def _dbt_executable() -> str:
    # the dbt of the running interpreter's environment, not whatever is first on PATH
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def _failed_nodes(target_dir: Path) -> list[str]:
    """Names and messages of the nodes that errored or failed, from run_results.json."""
    path = target_dir / "run_results.json"
    if not path.is_file():
        return []
    try:
        results = json.loads(path.read_text()).get("results", [])
    except (OSError, ValueError):
        return []
    failed = []
    for result in results:
        if str(result.get("status", "")).lower() in _FAILED_STATUSES:
            name = result.get("unique_id", "?").split(".", 2)[-1]
            message = " ".join(str(result.get("message") or "").split())[:300]
            failed.append(f"{name}: {message}" if message else name)
    return failed


def run_dbt(
    settings: Settings,
    args: list[str],
    as_of: datetime | date | None = None,
    target_dir: Path | None = None,
) -> DbtRunResult:
    """Run the venv's dbt with `args` in the dbt project, streaming its log lines.

    Each warehouse keeps its own dbt target/ and logs/ beside the warehouse file, so builds of
    different warehouses (tests, benchmarks) running at once cannot mix their run results.

    Args:
        target_dir: where dbt writes its artefacts (default beside the warehouse); Dagster's
            manifest goes to dbt_project/target.

    Raises:
        DataError: dbt failed; the message names the failing models and tests.
    """
    project_dir = settings.dbt_project_dir
    work_dir = Path(settings.paths.warehouse).resolve().parent
    target_dir = target_dir or work_dir / "dbt_target"
    command = [_dbt_executable(), *args]
    if args and args[0] in _VARS_COMMANDS and "--vars" not in args:
        command += ["--vars", json.dumps(dbt_vars(settings, as_of))]
    if args and args[0] in _THREADED_COMMANDS and "--threads" not in args:
        command += thread_args(settings)
    env = {
        **os.environ,
        **dbt_env(settings),
        "DBT_TARGET_PATH": str(target_dir),
        "DBT_LOG_PATH": str(work_dir / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    # a failure that stops dbt before it writes results must not be blamed on an older run's nodes
    (target_dir / "run_results.json").unlink(missing_ok=True)
    logger.info("dbt %s", " ".join(args))
    started = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=project_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            # model results and the final tally at INFO (progress); test chatter at DEBUG
            important = "OK created" in line or "Finished running" in line or "ERROR" in line
            logger.log(logging.INFO if important else logging.DEBUG, "dbt: %s", line)
    seconds = round(time.perf_counter() - started, 2)
    result = DbtRunResult(
        args=list(args), returncode=proc.returncode, seconds=seconds, output="\n".join(lines)
    )
    if result.ok:
        return result
    failed = _failed_nodes(target_dir)
    detail = "\n  ".join(failed) if failed else "\n".join(lines[-25:])
    raise DataError(
        f"dbt {' '.join(args)} failed after {seconds}s (exit {proc.returncode}):\n  {detail}\n"
        f"Full log: {work_dir / 'dbt_logs' / 'dbt.log'}"
    )


def _check_raw_files(settings: Settings) -> None:
    raw_dir = Path(settings.paths.raw_dir)
    missing = [
        f"{name}.csv" for name in REQUIRED_RAW_FILES if not (raw_dir / f"{name}.csv").is_file()
    ]
    if missing:
        raise DataError(
            f"raw files missing in {raw_dir}: {', '.join(missing)}; run `lead-scoring generate` "
            "or drop the CRM export there (docs/contracts.md)"
        )


SPARK_SCHEMA = "lead_scoring"  # the schema of profiles.yml's spark output


def spark_table_dirs(settings: Settings) -> dict[str, Path]:
    """The Parquet folder of each table dbt-spark built (managed tables of the schema)."""
    schema_dir = Path(settings.spark.warehouse_dir) / "tables" / f"{SPARK_SCHEMA}.db"
    if not schema_dir.is_dir():
        return {}
    return {
        d.name: d for d in sorted(schema_dir.iterdir()) if d.is_dir() and any(d.glob("*.parquet"))
    }


def _connect_read_only(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that reads the warehouse of the engine: the DuckDB file read-only, or
    an in-memory database with one view per Spark table over its Parquet folder (Spark's
    timestamps carry the UTC zone in Parquet; the views drop it, as the contract wants)."""
    if settings.engine == "spark":
        tables = spark_table_dirs(settings)
        if not tables:
            raise DataError(
                f"Spark warehouse not found under {settings.spark.warehouse_dir}; "
                "run `lead-scoring build` first"
            )
        con = duckdb.connect()
        con.execute("set TimeZone = 'UTC'")
        for name, folder in tables.items():
            source = f"read_parquet('{str(folder).replace(chr(39), chr(39) * 2)}/*.parquet')"
            columns = con.sql(f"describe select * from {source}").fetchall()
            select = ", ".join(
                f'cast("{c}" as timestamp) as "{c}"'
                if kind == "TIMESTAMP WITH TIME ZONE"
                else f'"{c}"'
                for c, kind, *_ in columns
            )
            con.execute(f'create view "{name}" as select {select} from {source}')
        return con
    path = Path(settings.paths.warehouse)
    if not path.is_file():
        raise DataError(f"warehouse not found: {path}; run `lead-scoring build` first")
    return duckdb.connect(str(path), read_only=True)


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.sql(
        "select count(*) from information_schema.tables where table_name = $name",
        params={"name": name},
    ).fetchall()
    return bool(rows[0][0])


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.sql(sql).fetchall()[0][0])


def export_marts(settings: Settings) -> dict[str, Path]:
    """Write each mart to `marts_dir/<name>.parquet`, replacing the old file atomically.

    All marts are first written to temporary files, then moved into place with os.replace, so a
    reader sees either the old or the new file, never a partial one. A mart missing from the
    warehouse (a build with --select) is skipped with a warning.
    """
    marts_dir = Path(settings.paths.marts_dir)
    marts_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, tuple[Path, Path]] = {}
    con = _connect_read_only(settings)
    try:
        for name in MARTS:
            if not _table_exists(con, name):
                logger.warning("mart %s is not in the warehouse; not exported", name)
                continue
            final = marts_dir / f"{name}.parquet"
            tmp = marts_dir / f".{name}.parquet.tmp-{os.getpid()}"
            escaped = str(tmp).replace("'", "''")
            con.sql(f"copy (select * from {name}) to '{escaped}' (format parquet)")
            staged[name] = (tmp, final)
    except BaseException:
        for tmp, _ in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    for tmp, final in staged.values():
        os.replace(tmp, final)
    logger.info("exported %s to %s", ", ".join(staged) or "no marts", marts_dir)
    return {name: final for name, (_, final) in staged.items()}


def rejected_counts(settings: Settings) -> dict[str, int]:
    """Rows rejected per raw file (leads, activities, conversions, lead_attribute_changes) in
    the last build."""
    con = _connect_read_only(settings)
    try:
        # the base tables hold every raw row with its reason (the *_rejected views split them;
        # views are not tables a Spark build leaves as Parquet)
        return {
            name: _count(
                con, f"select count(*) from base_crm__{name} where rejection_reason is not null"
            )
            for name in RAW_FILES
        }
    finally:
        con.close()


def _row_counts(
    settings: Settings,
) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int], datetime | None]:
    con = _connect_read_only(settings)
    try:
        raw, accepted, rejected = {}, {}, {}
        for name in RAW_FILES:
            # the base tables hold one row per raw row (the rows_add_up test checks the source)
            if not _table_exists(con, f"base_crm__{name}"):
                continue
            raw[name] = _count(con, f"select count(*) from base_crm__{name}")
            rejected[name] = _count(
                con, f"select count(*) from base_crm__{name} where rejection_reason is not null"
            )
            accepted[name] = raw[name] - rejected[name]
        marts = {
            name: _count(con, f"select count(*) from {name}")
            for name in MARTS
            if _table_exists(con, name)
        }
        as_of = None
        if _table_exists(con, "int_snapshots_scheduled"):
            as_of = con.sql("select max(as_of_ts) from int_snapshots_scheduled").fetchall()[0][0]
        return raw, accepted, rejected, marts, as_of
    finally:
        con.close()


def build_warehouse(
    settings: Settings,
    as_of: datetime | date | None = None,
    select: str | None = None,
    full_refresh: bool = False,
) -> BuildSummary:
    """`dbt build` over the raw files, then export the marts to Parquet.

    The models that grow with history are incremental: a build over a warehouse built before
    redoes only the leads whose inputs changed (dbt_project/macros/incremental.sql).

    Args:
        as_of: pin the point in time (see `dbt_vars`); None derives it from the data.
        select: a dbt selection (e.g. "+lead_features") to build part of the project.
        full_refresh: rebuild the incremental models from scratch.

    Raises:
        DataError: a raw file is missing, or a model or test failed (marts are then not exported).
    """
    started = time.perf_counter()
    _check_raw_files(settings)
    Path(settings.paths.warehouse).parent.mkdir(parents=True, exist_ok=True)
    if settings.engine == "spark":
        Path(settings.spark.warehouse_dir).mkdir(parents=True, exist_ok=True)
    args = ["build"] + (["--select", select] if select else [])
    args += ["--full-refresh"] if full_refresh else []
    result = run_dbt(settings, args, as_of=as_of)
    marts = export_marts(settings)
    raw, accepted, rejected, mart_rows, effective_as_of = _row_counts(settings)
    summary = BuildSummary(
        as_of=effective_as_of,
        raw_rows=raw,
        accepted_rows=accepted,
        rejected_rows=rejected,
        mart_rows=mart_rows,
        marts=marts,
        dbt_seconds=result.seconds,
        seconds=round(time.perf_counter() - started, 2),
    )
    logger.info(
        "warehouse built in %.1fs (dbt %.1fs): %s", summary.seconds, result.seconds, mart_rows
    )
    return summary
