"""Landing a CRM export: vendor files → leads.csv, activities.csv, conversions.csv + a report.

The landing folds what it can (case, whitespace, synonyms, option-set codes, timestamp formats and
zones, thousands separators) and keeps every lead row: a value it cannot read is written as it came
and counted as rejected, so dbt staging (the second line) nulls a bad attribute or quarantines a
row without a usable key with a reason. The three files are written to a temporary folder in the
raw folder and renamed into place only when all three are written, so a failure leaves the
previous files.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ml.config import Settings, VocabularySettings
from ml.contract import RAW_COLUMNS, remove_raw_parts
from ml.errors import DataError
from ml.landing.fold import FoldedColumn, first_non_empty, fold_column, fold_key, fold_timestamps
from ml.landing.mapping import (
    COLUMN_KINDS,
    ColumnMap,
    Mapping,
    TableMap,
    load_mapping,
    load_synonyms,
    resolve_mapping_path,
    vocabularies,
)
from ml.landing.merge import merge_into_raw, raw_lead_ids
from ml.landing.read import ExportTable, read_export
from ml.landing.report import (
    MAX_EXAMPLES,
    ColumnReport,
    ExportRead,
    FileReport,
    LandingReport,
    write_html,
    write_json,
)

logger = logging.getLogger(__name__)

LANDED_FILES = ("leads", "activities", "conversions")


def _export_read(table: ExportTable) -> ExportRead:
    return ExportRead(
        table.name,
        [str(p) for p in table.files],
        list(table.encodings),
        table.rows,
        table.blank_lines,
    )


def _examples(raw: pd.Series, folded: FoldedColumn) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    pairs = pd.DataFrame({"raw": raw, "out": folded.values, "outcome": folded.outcome})
    for outcome, group in pairs.groupby("outcome", sort=False):
        if outcome == "ok":
            continue
        distinct = group.drop_duplicates(["raw", "out"]).head(MAX_EXAMPLES)
        out[str(outcome)] = distinct[["raw", "out"]].astype(str).values.tolist()
    return out


@dataclass(frozen=True)
class Terms:
    """What values fold to: the shared synonym sets and the enum columns' vocabularies."""

    synonyms: dict[str, dict[str, str]]
    vocabularies: dict[str, tuple[str, ...]]


class _TableLander:
    """Reads the vendor columns of one table map and folds them, recording the report."""

    def __init__(
        self,
        mapping: Mapping,
        table_map: TableMap,
        export: ExportTable,
        name: str,
        terms: Terms,
    ):
        self.mapping, self.map, self.export, self.name = mapping, table_map, export, name
        self.synonyms, self.vocabularies = terms.synonyms, terms.vocabularies

    def check_columns(self) -> None:
        """Raise naming the file and column when a column the mapping needs is absent."""
        files = ", ".join(p.name for p in self.export.files)
        have = set(self.export.frame.columns)
        for column, spec in self.map.columns.items():
            if (
                spec.column
                and not have.intersection(spec.column)
                and not spec.optional
                and spec.default is None
            ):
                raise DataError(
                    f"{files}: missing column {' or '.join(spec.column)} (the {self.name} "
                    f"contract column {column!r}, required by the {self.mapping.vendor} mapping); "
                    f"the export has: {', '.join(self.export.frame.columns)}"
                )
        if self.map.where and not have.intersection(self.map.where.column):
            raise DataError(
                f"{files}: missing column {' or '.join(self.map.where.column)} (the "
                f"{self.mapping.vendor} mapping selects {self.name} rows by it)"
            )

    def raw(self, frame: pd.DataFrame, spec: ColumnMap) -> tuple[pd.Series, list[str]]:
        return first_non_empty(frame, spec.column)

    def fold(
        self, frame: pd.DataFrame, column: str
    ) -> tuple[pd.Series, FoldedColumn, ColumnReport]:
        spec = self.map.columns[column]
        raw, sources = self.raw(frame, spec)
        kind = COLUMN_KINDS[column]
        folded = fold_column(
            raw, kind, spec, self.vocabularies.get(column), self.synonyms, self.mapping.timestamps
        )
        report = ColumnReport(column, sources, absent=bool(spec.column) and not sources)
        counts = folded.outcome.value_counts()
        for outcome in report.counts:
            report.counts[outcome] = int(counts.get(outcome, 0))
        report.examples = _examples(raw, folded)
        if folded.formats is not None:
            used = folded.formats[folded.formats != ""].value_counts()
            report.formats = {str(k): int(v) for k, v in used.items()}
        return raw, folded, report


def _folded(cells: pd.Series) -> pd.Series:
    """fold_key of every cell, computed once per distinct value."""
    return cells.map({u: fold_key(u) for u in pd.unique(cells)})


def _select(
    lander: _TableLander, frame: pd.DataFrame, report: FileReport, reason: str
) -> pd.DataFrame:
    where = lander.map.where
    if where is None:
        return frame
    cell, _ = first_non_empty(frame, where.column)
    wanted = {fold_key(v) for v in where.in_values}
    keep = _folded(cell).isin(wanted)
    for prefix in where.starts_with:
        keep |= cell.str.strip().str.startswith(prefix)
    if (~keep).any():
        report.dropped[reason] = report.dropped.get(reason, 0) + int((~keep).sum())
    return frame.loc[keep]


def _land_table(
    lander: _TableLander, frame: pd.DataFrame, report: FileReport
) -> tuple[pd.DataFrame, dict[str, FoldedColumn]]:
    """Fold every contract column of the rows of one table map; merge the column reports."""
    out: dict[str, pd.Series] = {}
    folded_columns: dict[str, FoldedColumn] = {}
    for column in lander.map.columns:
        _, folded, col_report = lander.fold(frame, column)
        out[column] = folded.values
        folded_columns[column] = folded
        _merge_column(report, col_report)
    return pd.DataFrame(out, index=frame.index), folded_columns


def _merge_column(report: FileReport, col: ColumnReport) -> None:
    if col.column not in report.columns:
        report.columns[col.column] = col
        return
    into = report.columns[col.column]
    into.sources = list(dict.fromkeys([*into.sources, *col.sources]))
    into.absent = into.absent and col.absent
    for k, v in col.counts.items():
        into.counts[k] += v
    for k, pairs in col.examples.items():
        into.examples[k] = (into.examples.get(k, []) + pairs)[:MAX_EXAMPLES]
    for k, v in col.formats.items():
        into.formats[k] = into.formats.get(k, 0) + v


def _land_leads(
    mapping: Mapping, exports: dict[str, ExportTable], terms: Terms
) -> tuple[pd.DataFrame, FileReport, pd.Series]:
    table = exports[mapping.leads.export]
    lander = _TableLander(mapping, mapping.leads, table, "leads", terms)
    lander.check_columns()
    report = FileReport("leads", [_export_read(table)], rows_in=table.rows)
    frame = _select(lander, table.frame, report, "not a lead")
    leads, folded = _land_table(lander, frame, report)

    # Of rows sharing an id the most recent wins: by the export's last-modified column when the
    # mapping names one (and it parses), else by created_at; the later row of the file on a tie.
    ids = leads["lead_id"]
    dup = (ids != "") & ids.duplicated(keep=False)
    if dup.any():
        recency = _recency(lander, frame, folded["created_at"])
        order = pd.DataFrame({"id": ids, "t": recency, "pos": range(len(ids))}, index=ids.index)
        order = order.sort_values(["id", "t", "pos"], na_position="first")
        losers = order[order.duplicated("id", keep="last") & (order["id"] != "")].index
        report.dropped["duplicate_id"] = len(losers)
        report.dropped_examples["duplicate_id"] = sorted(set(ids[losers]))[:MAX_EXAMPLES]
        report.notes.append(
            f"{len(losers)} row(s) repeated a lead id; the most recent row of each id was kept "
            f"(by {', '.join(lander.map.latest_by) or 'created_at'})."
        )
        leads = leads.drop(index=losers)
    report.rows_out = len(leads)
    created = folded["created_at"]
    created_ts = pd.Series(
        pd.to_datetime(
            created.values.loc[leads.index], format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True
        ),
        index=leads.index,
    )
    return leads, report, created_ts


def _recency(lander: _TableLander, frame: pd.DataFrame, created: FoldedColumn) -> pd.Series:
    created_ts = pd.to_datetime(
        created.values, format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True
    )
    if not lander.map.latest_by:
        return pd.Series(created_ts, index=frame.index)
    cells, _ = first_non_empty(frame, lander.map.latest_by)
    modified = fold_timestamps(
        cells, ColumnMap(column=lander.map.latest_by), lander.mapping.timestamps
    )
    modified_ts = pd.to_datetime(
        modified.values, format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True
    )
    return pd.Series(modified_ts, index=frame.index).fillna(
        pd.Series(created_ts, index=frame.index)
    )


def _split_lead_ids(activities: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    cells = activities["lead_id"].astype(str)
    parts = cells.str.strip("[] ").str.split(r"[,;\s]+", regex=True)
    parts = parts.map(lambda xs: [x for x in xs if x] or [""])
    n = parts.map(len)
    if (n <= 1).all():
        activities["lead_id"] = parts.str[0]
        return activities
    exploded = activities.assign(lead_id=parts).explode("lead_id")
    multi = exploded.index.isin(n[n > 1].index)
    exploded.loc[multi, "activity_id"] = (
        exploded.loc[multi, "activity_id"] + ":" + exploded.loc[multi, "lead_id"]
    )
    report.added["one per associated lead"] = int((n[n > 1] - 1).sum())
    return exploded.reset_index(drop=True)


def _land_activities(
    mapping: Mapping, exports: dict[str, ExportTable], terms: Terms, lead_ids: set[str]
) -> tuple[pd.DataFrame, FileReport]:
    report = FileReport("activities", [])
    frames = []
    for table_map in mapping.activities:
        table = exports[table_map.export]
        lander = _TableLander(mapping, table_map, table, "activities", terms)
        lander.check_columns()
        report.exports.append(_export_read(table))
        report.rows_in += table.rows
        frame = _select(lander, table.frame, report, "not about a lead")
        type_spec = table_map.columns["activity_type"]
        if type_spec.drop:
            kind_cell, _ = first_non_empty(frame, type_spec.column)
            drop = _folded(kind_cell).isin({fold_key(v) for v in type_spec.drop})
            if drop.any():
                report.dropped["not an engagement"] = report.dropped.get(
                    "not an engagement", 0
                ) + int(drop.sum())
                frame = frame.loc[~drop]
        landed, _ = _land_table(lander, frame, report)
        if table_map.columns["lead_id"].split_ids:
            landed = _split_lead_ids(landed, report)
        frames.append(landed)
    activities = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=RAW_COLUMNS["activities"])
    )
    orphans = ~activities["lead_id"].isin(lead_ids)
    if orphans.any():
        report.notes.append(
            f"{int(orphans.sum())} activities name a lead the leads export does not hold "
            "(e.g. "
            + ", ".join(sorted(set(activities.loc[orphans, "lead_id"]))[:MAX_EXAMPLES])
            + "); written as they came, dbt staging quarantines them as unknown_lead."
        )
    report.rows_out = len(activities)
    return activities, report


def _land_conversions(
    mapping: Mapping,
    exports: dict[str, ExportTable],
    terms: Terms,
    leads_created: pd.Series,
    lead_ids: pd.Series,
) -> tuple[pd.DataFrame, FileReport]:
    table_map = mapping.conversions
    table = exports[table_map.export]
    lander = _TableLander(mapping, table_map, table, "conversions", terms)
    lander.check_columns()
    report = FileReport("conversions", [_export_read(table)], rows_in=table.rows)
    frame = table.frame
    if table_map.export == mapping.leads.export:
        # Conversions read off the lead export come from the lead rows that were kept.
        frame = frame.loc[frame.index.isin(lead_ids.index)]
        if len(frame) < table.rows:
            report.dropped["lead row not kept (duplicate id)"] = table.rows - len(frame)
    frame = _select(lander, frame, report, "not converted")
    conversions, folded = _land_table(lander, frame, report)
    # A date-only conversion (Salesforce ConvertedDate) on the day the lead was created would fall
    # before its creation at midnight; it happened at or after creation, so take creation.
    date_only = folded["converted_at"].date_only
    if date_only is not None and date_only.any() and table_map.export == mapping.leads.export:
        converted = pd.to_datetime(
            conversions["converted_at"], format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True
        )
        created = leads_created.reindex(conversions.index)
        clamp = date_only & (converted < created)
        if clamp.any():
            conversions.loc[clamp, "converted_at"] = created[clamp].dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            report.notes.append(
                f"{int(clamp.sum())} date-only conversion(s) on the lead's creation day were "
                "set to the creation time (midnight would precede it)."
            )
        report.notes.append(
            f"{int(date_only.sum())} conversion timestamp(s) are dates without a time: read as "
            f"midnight {mapping.timestamps.timezone}."
        )
    report.rows_out = len(conversions)
    return conversions, report


def _count_future(values: pd.Series, landed_at: datetime, report: FileReport) -> None:
    stamped = pd.to_datetime(values, format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True)
    now = pd.Timestamp(landed_at)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    future = stamped > now
    report.future_rows = int(future.sum())
    if report.future_rows:
        report.notes.append(
            f"{report.future_rows} row(s) are stamped after the landing (e.g. "
            f"{values[future].iloc[0]}); dbt staging rejects them as future_timestamp."
        )


def _one_line_per_row(frame: pd.DataFrame) -> pd.DataFrame:
    """A carriage return inside a cell becomes a line feed. The CSV writer quotes a cell that
    holds a line feed (its line terminator) but not one that holds a bare CR, which every reader
    (pandas, DuckDB) takes for a line end: the row would be read back as two."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            values = out[col]
            has_cr = values.map(lambda v: isinstance(v, str) and "\r" in v)
            if has_cr.any():
                out.loc[has_cr, col] = (values[has_cr].str.replace("\r\n", "\n", regex=False)
                                        .str.replace("\r", "\n", regex=False))
    return out


def _write_atomically(frames: dict[str, pd.DataFrame], raw_dir: Path) -> None:
    """Write every contract file to a temporary folder in `raw_dir`, then rename each into place.

    A contract file the mapping does not produce is written with its header only: a file left by
    an earlier landing or the generator would describe other leads. Part files of earlier
    nightly increments are deleted (newest first) before the renames.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    frames = {
        **frames,
        **{n: pd.DataFrame(columns=list(c)) for n, c in RAW_COLUMNS.items() if n not in frames},
    }
    tmp = Path(tempfile.mkdtemp(prefix=".landing-", dir=raw_dir))
    try:
        for name, frame in frames.items():
            _one_line_per_row(frame.loc[:, list(RAW_COLUMNS[name])]).to_csv(
                tmp / f"{name}.csv", index=False, lineterminator="\n", encoding="utf-8"
            )
        # the increments of the data this export replaces must not be read with it
        remove_raw_parts(raw_dir)
        for name in frames:
            os.replace(tmp / f"{name}.csv", raw_dir / f"{name}.csv")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def land_export(
    mapping: str | Path,
    export_dir: Path,
    raw_dir: Path,
    reports_dir: Path | None = None,
    landed_at: datetime | None = None,
    vocabulary: VocabularySettings | None = None,
    merge: bool = False,
) -> LandingReport:
    """Turn a CRM export into the raw contract files and write the data-quality report.

    Args:
        mapping: a shipped mapping's name (config/crm_mappings/NAME.yaml) or a YAML path.
        export_dir: the folder holding the vendor's export files.
        raw_dir: where leads.csv, activities.csv and conversions.csv are written.
        reports_dir: the report goes to `<reports_dir>/landing/<date>/report.{json,html}`;
            None writes no report files.
        landed_at: the landing's time (default now, UTC).
        vocabulary: the settings' vocabulary enum values fold to (default: the default one).
        merge: the export is a nightly increment (only what changed since the last one):
            upsert it into the raw files by id (ml/landing/merge.py) instead of replacing them.

    Raises:
        ConfigError: the mapping is missing or invalid.
        DataError: an export file is missing, or lacks a column the mapping needs (the message
            names the file and the column).
    """
    spec = load_mapping(mapping, vocabulary)
    terms = Terms(load_synonyms(), vocabularies(vocabulary))
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise DataError(f"export folder not found: {export_dir}")
    needed = [spec.leads.export, *(a.export for a in spec.activities), spec.conversions.export]
    exports = {
        name: read_export(export_dir, name, spec.exports[name]) for name in dict.fromkeys(needed)
    }

    leads, leads_report, created = _land_leads(spec, exports, terms)
    known_leads = set(leads["lead_id"]) | (raw_lead_ids(Path(raw_dir)) if merge else set())
    activities, activities_report = _land_activities(spec, exports, terms, known_leads)
    conversions, conversions_report = _land_conversions(
        spec, exports, terms, created, leads["lead_id"]
    )
    landed_at = landed_at or datetime.now(UTC)
    for frame, column, file_report in (
        (leads, "created_at", leads_report),
        (activities, "occurred_at", activities_report),
        (conversions, "converted_at", conversions_report),
    ):
        _count_future(frame[column], landed_at, file_report)
    frames = {"leads": leads, "activities": activities, "conversions": conversions}
    merged = None
    if merge:
        one_line = {k: _one_line_per_row(v) for k, v in frames.items()}
        merged = {k: v.to_dict() for k, v in merge_into_raw(one_line, Path(raw_dir)).items()}
    else:
        _write_atomically(frames, Path(raw_dir))
    report = LandingReport(
        mapping=str(resolve_mapping_path(mapping)),
        vendor=spec.vendor,
        export_dir=str(export_dir),
        raw_dir=str(raw_dir),
        landed_at=landed_at.isoformat(timespec="seconds"),
        files={
            "leads": leads_report,
            "activities": activities_report,
            "conversions": conversions_report,
        },
        merged=merged,
    )
    if reports_dir is not None:
        out = Path(reports_dir) / "landing" / landed_at.date().isoformat()
        out.mkdir(parents=True, exist_ok=True)
        report.report_dir = str(out)
        write_json(report, out / "report.json")
        write_html(report, out / "report.html")
    logger.info("landed %s export: %s", spec.vendor, report.summary())
    return report


def land_from_settings(
    settings: Settings, mapping: str | Path, export_dir: Path, *, merge: bool = False
) -> LandingReport:
    """`land_export` into the settings' raw folder, the report under its reports folder
    (`merge`: the export is a nightly increment, upserted into the raw files)."""
    return land_export(
        mapping,
        export_dir,
        settings.paths.raw_dir,
        settings.paths.reports_dir,
        vocabulary=settings.vocabulary,
        merge=merge,
    )
