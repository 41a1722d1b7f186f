"""Checks on the raw landing zone before dbt reads it.

dbt quarantines bad *rows*; this module refuses bad *files*: a missing file, a missing column or
an empty file stops the run with a message naming the file and the column, before anything
downstream is replaced.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ml.contract import OPTIONAL_RAW_FILES, RAW_COLUMNS, raw_part_files
from ml.errors import DataError

# The raw contract (docs/contracts.md): file -> required columns, in order.
RAW_CONTRACT = RAW_COLUMNS


@dataclass(frozen=True)
class LandedFile:
    name: str
    path: Path
    rows: int
    bytes: int
    extra_columns: tuple[str, ...] = ()
    present: bool = True  # False: an optional file the export lacks (counted as empty)
    parts: int = 0  # part files of nightly increments beside it (rows and bytes include them)


@dataclass(frozen=True)
class LandingReport:
    files: dict[str, LandedFile] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(f.rows for f in self.files.values())


def _count_rows(path: Path) -> int:
    # Newline count minus the header; fast enough for tens of millions of rows (buffered read).
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return max(count - 1, 0)


def validate_landing_zone(raw_dir: Path, count_rows: bool = True) -> LandingReport:
    """Check that every raw file exists and carries the contract's columns (its part files, if
    nightly increments appended any, the same columns; rows and bytes count them too).

    An optional file (OPTIONAL_RAW_FILES) may be missing or hold a header only; it is reported
    with `present` False or 0 rows.

    Raises:
        DataError: naming the missing file or the missing columns.
    """
    files: dict[str, LandedFile] = {}
    for name, required in RAW_CONTRACT.items():
        path = raw_dir / f"{name}.csv"
        optional = name in OPTIONAL_RAW_FILES
        if optional and not path.is_file():
            files[name] = LandedFile(name, path, 0, 0, present=False)
            continue
        if not path.is_file():
            raise DataError(
                f"raw file missing: {path} (drop a CRM export there or run `lead-scoring generate`)"
            )
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        missing = [col for col in required if col not in header]
        if missing:
            raise DataError(
                f"{path.name} lacks column(s) {', '.join(missing)}; "
                "the contract is in data/README.md"
            )
        parts = raw_part_files(raw_dir, name)
        for part in parts:
            with part.open(newline="", encoding="utf-8") as handle:
                if tuple(next(csv.reader(handle), [])) != tuple(header):
                    raise DataError(
                        f"{part.name}: its header differs from {path.name}'s; a part file of "
                        "a nightly increment has the columns of its table"
                    )
        rows = sum(_count_rows(p) for p in (path, *parts)) if count_rows else -1
        if rows == 0 and not optional:
            raise DataError(f"{path} has a header but no rows")
        extra = tuple(col for col in header if col not in required)
        size = sum(p.stat().st_size for p in (path, *parts))
        files[name] = LandedFile(name, path, rows, size, extra, parts=len(parts))
    return LandingReport(files)
