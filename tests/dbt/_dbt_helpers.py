"""Helpers of the dbt-layer tests: small generated raw data and raw-file edits."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from ml.config import Settings, load_settings

# Small: enough leads for every enum value and a few conversions, cheap to build.
SMALL = {"n_leads": 300, "days": 150, "end_date": date(2026, 11, 1), "seed": 11}
AS_OF = datetime(2026, 11, 1)


def small_settings(data_dir: Path) -> Settings:
    """Settings whose generated files all live under `data_dir`.

    The quarantine tests plant more bad rows than 5 % of 300 leads' conversions, so the
    rejected-share gate is relaxed here; tests/orchestration proves the gate itself.
    """
    return load_settings(
        overrides={"paths.data_dir": str(data_dir), "features.max_rejected_share": 0.5}
    )


def generate_small(settings: Settings) -> None:
    """Write small seeded raw CSVs into the settings' raw folder."""
    from ml.data.generator import generate

    generate(settings.paths.raw_dir, settings.paths.truth_dir, **SMALL)


def append_rows(path: Path, rows: Sequence[Sequence[object]]) -> None:
    """Append raw rows (already text, "" for an empty field) to a CSV of the landing zone."""
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        needs_newline = fh.read(1) != b"\n"
    with path.open("a", newline="") as fh:
        if needs_newline:
            fh.write("\n")
        csv.writer(fh, lineterminator="\n").writerows(rows)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def read_csv_header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))
