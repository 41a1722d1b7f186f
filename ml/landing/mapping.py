"""A CRM mapping: how one vendor's export becomes the three files of the raw contract.

A mapping is a YAML file under config/crm_mappings/ (`salesforce`, `hubspot`, `dynamics` ship),
validated on load; an unknown key, a contract column left unmapped or a reference to an export
the mapping does not declare is an error that names the key. See config/crm_mappings/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml.config import PROJECT_ROOT, VocabularySettings
from ml.contract import RAW_COLUMNS
from ml.errors import ConfigError

MAPPINGS_DIR = PROJECT_ROOT / "config" / "crm_mappings"
SYNONYMS_FILE = MAPPINGS_DIR / "_synonyms.yaml"

# How each contract column is typed while landing.
Kind = Literal["id", "text", "enum", "integer", "decimal", "timestamp"]
COLUMN_KINDS: dict[str, Kind] = {
    "lead_id": "id",
    "activity_id": "id",
    "created_at": "timestamp",
    "occurred_at": "timestamp",
    "converted_at": "timestamp",
    "lead_source": "enum",
    "industry": "enum",
    "license_type": "enum",
    "budget_band": "enum",
    "activity_type": "enum",
    "country": "text",
    "company_size": "integer",
    "visa_quota": "integer",
    "package_value": "decimal",
}
# The enum columns and where their vocabulary lives in the settings (`vocabulary`): the
# categoricals' closed lists, and the activity types.
ENUM_ATTRIBUTES: tuple[str, ...] = ("lead_source", "industry", "license_type", "budget_band")


def vocabularies(vocabulary: VocabularySettings | None = None) -> dict[str, tuple[str, ...]]:
    """The values each enum column must end in, from the settings' vocabulary (default: the
    default vocabulary)."""
    vocabulary = vocabulary or VocabularySettings()
    out = {name: vocabulary.values(name) for name in ENUM_ATTRIBUTES}
    out["activity_type"] = vocabulary.activity_type_names
    return out


# The default vocabulary's lists (kept for callers that land without settings).
VOCABULARIES: dict[str, tuple[str, ...]] = vocabularies()
# Columns a row cannot do without: a row missing one is kept as it came (dbt quarantines it
# with a reason), and an export lacking the column altogether stops the landing.
KEY_COLUMNS = {
    "leads": ("lead_id", "created_at"),
    "activities": ("activity_id", "lead_id", "occurred_at", "activity_type"),
    "conversions": ("lead_id", "converted_at"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ColumnMap(_Strict):
    """Where one contract column comes from and how its values are folded."""

    # Vendor column names, in order of preference: per row, the first non-empty one wins, so both
    # the API names (`CreatedDate`) and the report labels (`Create Date`) of a field can be listed.
    column: list[str] = Field(default_factory=list)
    # The export may lack every listed column (a custom field not every org has): values are then
    # the default (or null), and the report says the column was absent.
    optional: bool = False
    # Vendor value -> contract value, after case and whitespace folding of both sides. A null
    # target means "a known value with no equivalent in our vocabulary": written as null.
    values: dict[str, str | int | float | None] = Field(default_factory=dict)
    # Named synonym sets of config/crm_mappings/_synonyms.yaml merged before `values`.
    synonyms: list[str] = Field(default_factory=list)
    # Written when the vendor value is empty (or the optional column is absent).
    default: str | None = None
    # Activities only: vendor values that are not an engagement of the lead (a rep's own email,
    # a note); such rows are left out and counted as dropped.
    drop: list[str] = Field(default_factory=list)
    # Timestamps only: formats tried in order, overriding the mapping's `timestamps.formats`.
    formats: list[str] | None = None
    # Activities' lead_id only: the cell may hold several ids (HubSpot `associations.contactIds`
    # "[101, 102]"); one activity per id, the activity id suffixed with ":<lead id>".
    split_ids: bool = False

    _as_list_column = field_validator("column", "synonyms", "drop", mode="before")(_as_list)

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # YAML reads option-set codes (`1: Advertisement`) as ints; vendor cells are text.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _needs_a_source(self) -> ColumnMap:
        if not self.column and self.default is None and not self.optional:
            raise ValueError("give `column` (vendor column names), or `optional: true`/`default`")
        return self


class Condition(_Strict):
    """Rows of an export that count: the first non-empty of `column` is one of `in` (compared
    after case and whitespace folding) or starts with one of `starts_with` (e.g. Salesforce
    lead ids start with 00Q)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    column: list[str]
    in_values: list[str] = Field(default_factory=list, alias="in")
    starts_with: list[str] = Field(default_factory=list)

    _as_list_column = field_validator("column", "starts_with", mode="before")(_as_list)

    @field_validator("in_values", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return [str(v) for v in _as_list(value)]

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if not self.in_values and not self.starts_with:
            raise ValueError("give `in` (values) or `starts_with` (prefixes)")
        return self


class TableMap(_Strict):
    """One contract file (or one part of it) made from one vendor export."""

    export: str
    where: Condition | None = None
    # Leads only: of rows sharing an id the most recent by this column wins (e.g. the export's
    # last-modified column); created_at when absent.
    latest_by: list[str] = Field(default_factory=list)
    columns: dict[str, ColumnMap]

    _as_list_latest = field_validator("latest_by", mode="before")(_as_list)


class TimestampRules(_Strict):
    # `iso` (ISO 8601, offset honoured), `epoch_ms`, `epoch_s`, or a strptime format.
    formats: list[str] = Field(default_factory=lambda: ["iso"])
    # Zone of timestamps written without an offset (an IANA name).
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


class Mapping(_Strict):
    """A vendor's export → leads.csv, activities.csv, conversions.csv."""

    vendor: str
    description: str = ""
    # Export name -> glob patterns of its files in the export folder (several matching files of
    # one export are read in name order and stacked).
    exports: dict[str, list[str]]
    timestamps: TimestampRules = TimestampRules()
    leads: TableMap
    activities: list[TableMap]
    conversions: TableMap

    @field_validator("exports", mode="before")
    @classmethod
    def _patterns_as_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _as_list(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _complete(self) -> Mapping:
        tables = {
            "leads": [self.leads],
            "activities": self.activities,
            "conversions": [self.conversions],
        }
        for name, maps in tables.items():
            for i, table in enumerate(maps):
                where = f"{name}[{i}]" if name == "activities" else name
                if table.export not in self.exports:
                    raise ValueError(
                        f"{where}.export: {table.export!r} is not one of exports "
                        f"({', '.join(self.exports)})"
                    )
                required = RAW_COLUMNS[name]
                missing = [c for c in required if c not in table.columns]
                extra = [c for c in table.columns if c not in required]
                if missing:
                    raise ValueError(
                        f"{where}.columns: contract column(s) not mapped: {', '.join(missing)}"
                    )
                if extra:
                    raise ValueError(
                        f"{where}.columns: not contract column(s): "
                        f"{', '.join(extra)} (the contract is in data/README.md)"
                    )
                for column in KEY_COLUMNS[name]:
                    if table.columns[column].optional:
                        raise ValueError(
                            f"{where}.columns.{column}: a key column cannot be optional"
                        )
        return self


def resolve_mapping_path(name_or_path: str | Path) -> Path:
    """A mapping NAME (config/crm_mappings/NAME.yaml) or a path to a YAML file."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        return candidate
    return MAPPINGS_DIR / f"{text}.yaml"


def available_mappings() -> list[str]:
    """Names of the shipped mappings."""
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _format_errors(err: ValidationError, source: Path) -> str:
    lines = [f"invalid CRM mapping {source}:"]
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def load_synonyms(path: Path = SYNONYMS_FILE) -> dict[str, dict[str, str]]:
    """The named synonym sets shared by the mappings (e.g. `countries`)."""
    if not path.is_file():
        return {}
    tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {name: {str(k): v for k, v in (values or {}).items()} for name, values in tree.items()}


def load_mapping(
    name_or_path: str | Path, vocabulary: VocabularySettings | None = None
) -> Mapping:
    """Load and validate a mapping.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown, missing or invalid
            (the message names it).
    """
    path = resolve_mapping_path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"CRM mapping not found: {path} (shipped: {', '.join(available_mappings())}; "
            "or give a path to a YAML file)"
        )
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"CRM mapping {path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"CRM mapping {path} must hold a mapping at the top level")
    try:
        mapping = Mapping.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path)) from None
    known = load_synonyms()
    for table in [mapping.leads, *mapping.activities, mapping.conversions]:
        for column, spec in table.columns.items():
            where = f"invalid CRM mapping {path}:\n  - {table.export}.columns.{column}"
            unknown = [s for s in spec.synonyms if s not in known]
            if unknown:
                raise ConfigError(
                    f"{where}.synonyms: unknown set(s) {', '.join(unknown)} (defined in "
                    f"{SYNONYMS_FILE.name}: {', '.join(known) or 'none'})"
                )
            enum_values = vocabularies(vocabulary).get(column)
            targets = {**{k: v for s in spec.synonyms for k, v in known[s].items()}, **spec.values}
            if enum_values:
                bad = sorted(
                    {str(v) for v in targets.values() if v is not None and v not in enum_values}
                )
                if bad:
                    raise ConfigError(
                        f"{where}.values: {', '.join(bad)} not in the contract's {column} "
                        f"values ({', '.join(enum_values)}; settings `vocabulary`)"
                    )
    return mapping
