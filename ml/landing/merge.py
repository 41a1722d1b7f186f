"""Nightly increments: merge a landed export that holds only what changed into the raw files.

A nightly export carries the leads, activities and conversions created or edited since the last
one. Each is upserted by its id (`lead_id`; `activity_id`): a row of the increment replaces the
raw row with the same id, a new id is added, every other raw row stays — so an activity that
arrives late (stamped before rows already landed) is kept, and dbt counts it in the snapshots it
belongs to.

The cost follows the increment where the contract allows it:

* activities (thirty a lead, the bulk of the raw bytes) are never rewritten: the increment's
  activities become a new part file beside activities.csv, `activities.part-<seq>-<digest>.csv`
  (ml/contract.py RAW_TABLE_GLOB). dbt reads the base file and its parts as one table; of rows
  sharing an activity id the one of the latest file wins and the older ones are quarantined as
  `superseded` (models/staging/base/base_crm__activities.sql), which is the upsert.
* leads and conversions (one row a lead, about a thirtieth of the bytes) are upserted by
  rewriting their file: many readers take leads.csv and conversions.csv as the one file of their
  table, and a lead's newest row must replace, not join, the old one there.

Rows without an id (dbt quarantines them) are kept once each. Re-landing the same increment
changes nothing: the upserted files are ordered by id (the same bytes again), and a part whose
digest is already in the raw folder is not written twice.

Atomic: every file is first written to a temporary folder in the raw folder; then each is renamed
into place, leads first, then conversions, then the activities part, so a kill before the first
rename leaves the previous raw files, and one between renames leaves a consistent earlier state
(each conversion's and activity's lead is in leads.csv) that re-landing the same export completes.
DuckDB does the upserts, in a database file of the temporary folder (big files spill to disk).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ml.contract import RAW_COLUMNS, raw_part_files
from ml.errors import DataError

# The id each landed file is upserted by.
MERGE_KEYS: dict[str, str] = {"leads": "lead_id", "activities": "activity_id",
                              "conversions": "lead_id"}
# Files an increment is appended to as a part file (the upsert is resolved by dbt staging);
# the others are rewritten with the increment upserted.
APPENDED_FILES: tuple[str, ...] = ("activities",)
# Renames in this order: a conversion's or activity's lead is in leads.csv before it is.
COMMIT_ORDER: tuple[str, ...] = ("leads", "conversions", "activities")
_PART = re.compile(r"\.part-(\d+)-([0-9a-f]+)\.csv$")
_DIGEST_CHARS = 16


@dataclass
class MergeCounts:
    """What merging one increment did to one raw file.

    For a file the increment is appended to (activities) the raw rows are not read: `before`,
    `updated` and `after` are None, `added` counts the rows appended and `part` names the part
    file that holds them (an existing one when the same rows were landed before: then nothing
    is added).
    """

    before: int | None  # raw rows before the merge
    updated: int | None  # increment rows whose id was already there (they replace it)
    added: int  # increment rows with a new id (or none); appended rows for a part file
    after: int | None  # raw rows after the merge
    part: str | None = None  # the part file of an appended increment ("" when it was empty)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: what the merge did to the file."""
        if self.part is None:
            return f"{self.before} + {self.added} new, {self.updated} updated = {self.after}"
        if not self.added:
            landed = f" (landed before as {self.part})" if self.part else ""
            return f"nothing appended{landed}"
        return f"{self.added} appended as {self.part}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def _read_raw(path: Path, columns: tuple[str, ...]) -> str:
    """SQL reading a raw contract CSV as text (an absent file reads as empty)."""
    if not path.is_file():
        cols = ", ".join(f"cast(null as varchar) as {_quote(c)}" for c in columns)
        return f"(select {cols} where false)"
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    return (
        f"read_csv('{_literal(path)}', header = true, auto_detect = false, columns = {{{spec}}}, "
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


def _register_increment(
    con: duckdb.DuckDBPyConnection, name: str, increment: pd.DataFrame
) -> None:
    """The increment as table `increment` (text columns, an empty cell a null, `_ord` its row
    order), as the raw CSV reads back."""
    columns = RAW_COLUMNS[name]
    inc = increment.loc[:, list(columns)].astype("string").reset_index(drop=True)
    inc["_ord"] = range(len(inc))
    con.register("increment_df", inc)
    as_read = ", ".join(f"nullif({_quote(c)}, '') as {_quote(c)}" for c in columns)
    con.execute(f"create or replace table increment as select {as_read}, _ord from increment_df")
    con.unregister("increment_df")


def merge_file(
    con: duckdb.DuckDBPyConnection, name: str, increment: pd.DataFrame, raw: Path, out: Path
) -> MergeCounts:
    """Upsert `increment` into the raw file `raw` by its id, writing the result to `out`."""
    columns = RAW_COLUMNS[name]
    key = _quote(MERGE_KEYS[name])
    _check_header(raw, columns)
    _register_increment(con, name, increment)
    select = ", ".join(_quote(c) for c in columns)
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
    # ordered by id (rows without one last, by their text): re-landing writes the same bytes
    row_text = " || ',' || ".join(f"coalesce({_quote(c)}, '')" for c in columns)
    con.execute(
        f"""copy (
            select * from (select * from kept union all select * from inc)
            order by {key} nulls last,
                case when {no_key.format(key)} then {row_text} end nulls first
        ) to '{_literal(out)}' (header, delimiter ',', quote '"', escape '"')"""
    )
    for table in ("existing", "increment", "inc", "kept"):
        con.execute(f"drop table {table}")
    replaced = before - kept
    return MergeCounts(before=before, updated=replaced, added=inc_rows - replaced,
                       after=kept + inc_rows)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()[:_DIGEST_CHARS]


def append_part(
    con: duckdb.DuckDBPyConnection, name: str, increment: pd.DataFrame, raw_dir: Path, tmp: Path
) -> tuple[MergeCounts, Path | None]:
    """Write `increment` as the next part file of raw table `name` into the folder `tmp`.

    The raw files are not read (only the base file's header is checked). The part is named
    `<name>.part-<seq>-<digest>.csv`: `seq` one more than the raw folder's last part, `digest`
    the file's SHA-256, so the same rows landed again are recognised and not written twice.

    Returns:
        the counts and the written part in `tmp` (None when there is nothing to rename in).
    """
    columns = RAW_COLUMNS[name]
    _check_header(raw_dir / f"{name}.csv", columns)
    if increment.empty:
        return MergeCounts(None, None, 0, None, part=""), None
    _register_increment(con, name, increment)
    staged = tmp / f"{name}.part.csv"
    select = ", ".join(_quote(c) for c in columns)
    con.execute(
        f"""copy (select {select} from increment order by _ord)
        to '{_literal(staged)}' (header, delimiter ',', quote '"', escape '"')"""
    )
    con.execute("drop table increment")
    digest = _digest(staged)
    parts = raw_part_files(raw_dir, name)
    for part in parts:
        match = _PART.search(part.name)
        if match and match.group(2) == digest:
            staged.unlink()
            return MergeCounts(None, None, 0, None, part=part.name), None
    seqs = [int(m.group(1)) for m in (_PART.search(p.name) for p in parts) if m]
    final = tmp / f"{name}.part-{max(seqs, default=0) + 1:06d}-{digest}.csv"
    staged.rename(final)
    return MergeCounts(None, None, len(increment), None, part=final.name), final


def merge_into_raw(frames: dict[str, pd.DataFrame], raw_dir: Path) -> dict[str, MergeCounts]:
    """Upsert each landed frame into raw table `raw_dir/<name>`: leads and conversions rewritten,
    activities appended as a part file (module docstring).

    Raises:
        DataError: a raw file does not have the contract's header.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=raw_dir))
    counts: dict[str, MergeCounts] = {}
    staged: dict[str, Path] = {}
    try:
        # a database file in the temporary folder: a big upsert spills to disk, not memory
        with duckdb.connect(str(tmp / "merge.duckdb")) as con:
            for name, frame in frames.items():
                if name in APPENDED_FILES:
                    counts[name], part = append_part(con, name, frame, raw_dir, tmp)
                    if part is not None:
                        staged[name] = part
                else:
                    out = tmp / f"{name}.csv"
                    counts[name] = merge_file(con, name, frame, raw_dir / f"{name}.csv", out)
                    staged[name] = out
        order = [n for n in COMMIT_ORDER if n in staged] + [
            n for n in staged if n not in COMMIT_ORDER
        ]
        for name in order:
            os.replace(staged[name], raw_dir / staged[name].name)
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
