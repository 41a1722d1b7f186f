"""Nightly increments: merge a landed export that holds only what changed into the raw files.

A nightly export carries the leads, activities and conversions created or edited since the last
one. Each file is upserted by its id (`lead_id`; `activity_id`): a row of the increment replaces
the raw row with the same id, a new id is added, every other raw row stays — so an activity that
arrives late (stamped before rows already landed) is kept, and dbt counts it in the snapshots it
belongs to. Rows without an id (dbt quarantines them) are kept once each. Re-landing the same
increment gives byte-identical files (idempotent): the merged file is ordered by id.

DuckDB does the merge, so a million leads and thirty million activities merge in seconds; the
files are written beside the raw ones and renamed into place only when all are written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ml.contract import RAW_COLUMNS
from ml.errors import DataError

# The id each landed file is upserted by.
MERGE_KEYS: dict[str, str] = {"leads": "lead_id", "activities": "activity_id",
                              "conversions": "lead_id"}


@dataclass
class MergeCounts:
    """What merging one increment did to one raw file."""

    before: int  # raw rows before the merge
    updated: int  # increment rows whose id was already there (they replace it)
    added: int  # increment rows with a new id (or none)
    after: int  # raw rows after the merge

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read_raw(path: Path, columns: tuple[str, ...]) -> str:
    """SQL reading a raw contract CSV as text (an absent file reads as empty)."""
    if not path.is_file():
        cols = ", ".join(f"cast(null as varchar) as {_quote(c)}" for c in columns)
        return f"(select {cols} where false)"
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    literal = str(path).replace("'", "''")
    return (
        f"read_csv('{literal}', header = true, auto_detect = false, columns = {{{spec}}}, "
        "quote = '\"', escape = '\"', delim = ',', null_padding = true)"
    )


def _check_header(path: Path, columns: tuple[str, ...]) -> None:
    if not path.is_file():
        return
    with path.open(encoding="utf-8-sig") as fh:
        header = fh.readline().strip().split(",")
    if tuple(header) != columns:
        raise DataError(
            f"{path}: cannot merge an increment into it, its header is {header}, the contract's "
            f"is {list(columns)} (land a full export first)"
        )


def merge_file(
    con: duckdb.DuckDBPyConnection, name: str, increment: pd.DataFrame, raw: Path, out: Path
) -> MergeCounts:
    """Upsert `increment` into the raw file `raw` by its id, writing the result to `out`."""
    columns = RAW_COLUMNS[name]
    key = _quote(MERGE_KEYS[name])
    _check_header(raw, columns)
    inc = increment.loc[:, list(columns)].astype("string").reset_index(drop=True)
    inc["_ord"] = range(len(inc))
    con.register("increment_df", inc)
    select = ", ".join(_quote(c) for c in columns)
    # an empty cell is a null, as the raw CSV reads back
    as_read = ", ".join(f"nullif({_quote(c)}, '') as {_quote(c)}" for c in columns)
    con.execute(f"create or replace table increment as select {as_read}, _ord from increment_df")
    con.unregister("increment_df")
    con.execute(f"create or replace table existing as select * from {_read_raw(raw, columns)}")
    # the increment's own duplicates: its last row per id wins (an export's latest edit)
    con.execute(
        f"""create or replace table inc as
        select {select} from increment
        where nullif(trim({key}), '') is not null
        qualify row_number() over (partition by {key} order by _ord desc) = 1
        union all
        select distinct {select} from increment where nullif(trim({key}), '') is null"""
    )
    same_row = " and ".join(f"i.{_quote(c)} is not distinct from e.{_quote(c)}" for c in columns)
    no_key = "nullif(trim({}), '') is null"
    # raw rows the increment does not replace: another id (an anti join), or no id and not the
    # same row again
    con.execute(
        f"""create or replace table kept as
        select e.* from existing as e
        anti join (select {key} from inc where not {no_key.format(key)}) as i
            on e.{key} = i.{key}
        where not {no_key.format('e.' + key)}
        union all
        select e.* from existing as e
        anti join (select * from inc where {no_key.format(key)}) as i on {same_row}
        where {no_key.format('e.' + key)}"""
    )
    before, kept, inc_rows = (
        con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("existing", "kept", "inc")
    )
    target = str(out).replace("'", "''")
    # ordered by id (rows without one last, by their text): re-landing writes the same bytes
    row_text = " || ',' || ".join(f"coalesce({_quote(c)}, '')" for c in columns)
    con.execute(
        f"""copy (
            select * from (select * from kept union all select * from inc)
            order by {key} nulls last,
                case when {no_key.format(key)} then {row_text} end nulls first
        ) to '{target}' (header, delimiter ',', quote '"', escape '"')"""
    )
    for table in ("existing", "increment", "inc", "kept"):
        con.execute(f"drop table {table}")
    replaced = before - kept
    return MergeCounts(before=before, updated=replaced, added=inc_rows - replaced,
                       after=kept + inc_rows)


def merge_into_raw(frames: dict[str, pd.DataFrame], raw_dir: Path) -> dict[str, MergeCounts]:
    """Upsert each landed frame into `raw_dir/<name>.csv`; all files change or none.

    Raises:
        DataError: a raw file does not have the contract's header.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=raw_dir))
    counts: dict[str, MergeCounts] = {}
    try:
        # a database file in the temporary folder: 30M activities spill to disk, not memory
        with duckdb.connect(str(tmp / "merge.duckdb")) as con:
            for name, frame in frames.items():
                counts[name] = merge_file(
                    con, name, frame, raw_dir / f"{name}.csv", tmp / f"{name}.csv"
                )
        for name in frames:
            os.replace(tmp / f"{name}.csv", raw_dir / f"{name}.csv")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def raw_lead_ids(raw_dir: Path) -> set[str]:
    """The lead ids of the raw leads file (empty when there is none)."""
    path = raw_dir / "leads.csv"
    if not path.is_file():
        return set()
    with duckdb.connect() as con:
        rows = con.execute(
            f"select lead_id from {_read_raw(path, RAW_COLUMNS['leads'])} where lead_id is not null"
        ).fetchall()
    return {r[0] for r in rows}
