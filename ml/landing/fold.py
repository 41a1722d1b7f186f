"""Folding one vendor column into one contract column, counting what each value needed.

Every value gets one outcome:

* ``ok``        already in contract form, written unchanged;
* ``folded``    equal to a contract value after case/whitespace folding, or a number written with
  thousands separators (`1,200`) or a trailing `.0`;
* ``mapped``    changed by the mapping: a synonym or option-set code, a timestamp converted from
  another format or zone;
* ``defaulted`` empty, and the mapping gives a default;
* ``null``      written empty: the cell was empty (no default), or the mapping maps the value to
  null ("known, no equivalent of ours", e.g. HubSpot's OFFLINE source);
* ``rejected``  not understood: written as it came, so dbt staging decides (a bad attribute
  becomes null there and is listed in stg_crm__lead_attribute_issues; a bad key or timestamp
  sends the row to *_rejected with a reason).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ml.landing.mapping import ColumnMap, Kind, TimestampRules

OUTCOMES = ("ok", "folded", "mapped", "defaulted", "null", "rejected")
CONTRACT_TS = "%Y-%m-%dT%H:%M:%SZ"

_INT = re.compile(r"^\+?\d+$")
_INT_DOT_ZERO = re.compile(r"^\+?\d+\.0+$")
_THOUSANDS = re.compile(r"^\+?\d{1,3}(?:[,\u00a0\u202f' ’]\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^\+?\d+(?:\.\d+)?$")
# Currency codes or symbols around an amount ("AED 12,000", "$1,200.50", "12000 AED").
_CURRENCY = re.compile(r"^(?:[A-Za-z]{3}\s?|[$€£])?\s*(?P<num>[^A-Za-z$€£]+?)\s*(?:[A-Za-z]{3})?$")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_ISO_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH_MS = re.compile(r"^\d{12,14}$")
_EPOCH_S = re.compile(r"^\d{9,11}$")


def iso_utc(values: pd.Series, suffix: str = "Z", unit: str = "s") -> pd.Series:
    """UTC timestamps as ISO 8601 text (`2026-06-04T08:05:50Z`); NaT as "". Same text as
    strftime(CONTRACT_TS), an order of magnitude faster (no per-value formatting)."""
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz else values
    text = np.datetime_as_string(naive.to_numpy().astype(f"datetime64[{unit}]"), unit=unit)
    out = pd.Series(np.char.add(text.astype(str), suffix), index=values.index, dtype=object)
    return out.where(values.notna(), "")


def fold_key(value: object) -> str:
    """Case- and whitespace-insensitive key: ' Web  Form ' and 'web form' compare equal."""
    return " ".join(str(value).split()).casefold()


@dataclass
class FoldedColumn:
    """A contract column's values ("" for null) and each row's outcome."""

    values: pd.Series
    outcome: pd.Series
    # timestamps: the format each row was read with ("" when not read), and date-only rows
    formats: pd.Series | None = None
    date_only: pd.Series | None = None


def _empty_outcome(spec: ColumnMap) -> tuple[str, str]:
    if spec.default is not None:
        return spec.default, "defaulted"
    return "", "null"


def _synonym(target: str) -> tuple[str, str]:
    return (target, "mapped") if target else ("", "null")


def _synonym_table(spec: ColumnMap, shared: dict[str, dict[str, str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for name in spec.synonyms:
        table.update({fold_key(k): ("" if v is None else str(v)) for k, v in shared[name].items()})
    table.update({fold_key(k): ("" if v is None else str(v)) for k, v in spec.values.items()})
    return table


def _fold_text_value(
    raw: str,
    kind: Kind,
    spec: ColumnMap,
    vocabulary: dict[str, str] | None,
    synonyms: dict[str, str],
) -> tuple[str, str]:
    stripped = raw.strip()
    if not stripped:
        return _empty_outcome(spec)
    if kind == "id":
        return stripped, "ok" if stripped == raw else "folded"
    if vocabulary is not None and stripped in vocabulary.values():
        return stripped, "ok" if stripped == raw else "folded"
    key = fold_key(stripped)
    # a contract value in another case is folded, never remapped by a synonym
    if vocabulary is not None and key in vocabulary:
        return vocabulary[key], "folded"
    if key in synonyms:
        return _synonym(synonyms[key])
    for pattern, target in synonyms.items():
        if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
            return _synonym(target)
    if vocabulary is not None:
        return stripped, "rejected"
    collapsed = " ".join(stripped.split())
    return collapsed, "ok" if collapsed == raw else "folded"


def _fold_number_value(
    raw: str, kind: Kind, spec: ColumnMap, synonyms: dict[str, str]
) -> tuple[str, str]:
    stripped = raw.strip()
    if not stripped:
        return _empty_outcome(spec)
    key = fold_key(stripped)
    if key in synonyms:
        return _synonym(synonyms[key])
    if kind == "integer":
        if _INT.match(stripped):
            out = str(int(stripped))
            return out, "ok" if out == raw else "folded"
        if _INT_DOT_ZERO.match(stripped):
            return str(int(float(stripped))), "folded"
        if _THOUSANDS.match(stripped) and "." not in stripped:
            return re.sub(r"\D", "", stripped), "folded"
        return stripped, "rejected"
    # decimal
    if _DECIMAL.match(stripped):
        return stripped.lstrip("+"), "ok" if stripped == raw else "folded"
    match = _CURRENCY.match(stripped)
    number = match.group("num").strip() if match else ""
    if _DECIMAL.match(number) or _THOUSANDS.match(number):
        integer, _, fraction = number.partition(".")
        digits = re.sub(r"\D", "", integer) + (f".{fraction}" if fraction else "")
        try:
            return str(Decimal(digits)), "folded"
        except InvalidOperation:  # pragma: no cover - the regexes admit digits only
            pass
    return stripped, "rejected"


def _fold_by_unique(raw: pd.Series, fold) -> tuple[pd.Series, pd.Series]:
    uniques = pd.unique(raw)
    folded = {u: fold(u) for u in uniques}
    values = raw.map({u: v for u, (v, _) in folded.items()})
    outcome = raw.map({u: o for u, (_, o) in folded.items()})
    return values.astype(object), outcome.astype(object)


def _localize(parsed: pd.Series, zone: str) -> pd.Series:
    if parsed.dt.tz is not None:
        return parsed.dt.tz_convert("UTC")
    return parsed.dt.tz_localize(
        ZoneInfo(zone), ambiguous="NaT", nonexistent="shift_forward"
    ).dt.tz_convert("UTC")


def _parse_with(text: pd.Series, fmt: str, zone: str) -> tuple[pd.Series, pd.Series]:
    """Parse the rows `fmt` can read; returns UTC timestamps (NaT where not) and date-only flags."""
    index = text.index
    out = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    date_only = pd.Series(False, index=index)
    if fmt in {"epoch_ms", "epoch_s"}:
        pattern = _EPOCH_MS if fmt == "epoch_ms" else _EPOCH_S
        hit = text.str.match(pattern)
        if hit.any():
            unit = "ms" if fmt == "epoch_ms" else "s"
            out[hit] = pd.to_datetime(text[hit].astype("int64"), unit=unit, utc=True)
        return out, date_only
    if fmt == "iso":
        with_offset = text.str.contains(_OFFSET)
        for mask, aware in ((with_offset, True), (~with_offset, False)):
            if not mask.any():
                continue
            parsed = pd.to_datetime(text[mask], format="ISO8601", errors="coerce", utc=aware)
            out[mask] = parsed if aware else _localize(parsed, zone)
        date_only = text.str.match(_ISO_DATE_ONLY) & out.notna()
        return out, date_only
    parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc="%z" in fmt)
    out = parsed if "%z" in fmt else _localize(parsed, zone)
    if "%H" not in fmt and "%I" not in fmt:
        date_only = out.notna()
    return out, date_only


def fold_timestamps(raw: pd.Series, spec: ColumnMap, rules: TimestampRules) -> FoldedColumn:
    """Read timestamps with the mapping's formats (first that parses wins) and write them as ISO
    8601 UTC; text that no format reads is kept as it came (rejected)."""
    text = raw.str.strip()
    present = text != ""
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    used = pd.Series("", index=raw.index, dtype=object)
    date_only = pd.Series(False, index=raw.index)
    for fmt in spec.formats or rules.formats:
        todo = present & result.isna()
        if not todo.any():
            break
        parsed, only_date = _parse_with(text[todo], fmt, rules.timezone)
        hit = parsed.notna()
        idx = parsed.index[hit]
        result[idx] = parsed[hit]
        used[idx] = fmt
        date_only[idx] = only_date[hit]
    parsed_ok = result.notna()
    values = pd.Series("", index=raw.index, dtype=object)
    values[parsed_ok] = iso_utc(result[parsed_ok])
    values[present & ~parsed_ok] = text[present & ~parsed_ok]
    outcome = pd.Series("rejected", index=raw.index, dtype=object)
    outcome[parsed_ok] = np.where(values[parsed_ok] == raw[parsed_ok], "ok", "mapped")
    empty_value, empty_outcome = _empty_outcome(spec)
    values[~present] = empty_value
    outcome[~present] = empty_outcome
    return FoldedColumn(values, outcome, used, date_only)


def fold_column(
    raw: pd.Series,
    kind: Kind,
    spec: ColumnMap,
    vocabulary: tuple[str, ...] | None,
    shared_synonyms: dict[str, dict[str, str]],
    rules: TimestampRules,
) -> FoldedColumn:
    """Fold one column of vendor text (empty cells as "") into contract text."""
    if kind == "timestamp":
        return fold_timestamps(raw, spec, rules)
    synonyms = _synonym_table(spec, shared_synonyms)
    if kind in {"integer", "decimal"}:
        values, outcome = _fold_by_unique(
            raw, lambda v: _fold_number_value(v, kind, spec, synonyms)
        )
    else:
        vocab = {fold_key(v): v for v in vocabulary} if vocabulary is not None else None
        values, outcome = _fold_by_unique(
            raw, lambda v: _fold_text_value(v, kind, spec, vocab, synonyms)
        )
    return FoldedColumn(values, outcome)


def first_non_empty(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.Series, list[str]]:
    """Per row, the first non-empty cell of the listed columns that the frame has; and the
    columns it had. All-empty (or no such column) gives ""."""
    present = [c for c in columns if c in frame.columns]
    out = pd.Series("", index=frame.index, dtype=object)
    for column in reversed(present):
        cells = frame[column].astype(str)
        out = cells.where(cells.str.strip() != "", out)
    return out, present
