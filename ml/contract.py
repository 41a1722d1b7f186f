"""The raw contract's structure and the default vocabulary, in one place.

The raw files' columns are fixed here. The *vocabulary* (activity types with their engagement
weight and wording, the categorical attributes' values, the activity windows) is a setting:
`vocabulary` in config/training_config.yaml, validated by `ml.config.VocabularySettings`, whose
defaults are the constants below (the generator's vocabulary). dbt reads it as vars
(`ml.warehouse.dbt_vars`), Feast declares a field per count, training takes its feature list from
it, the reasons phrase it and the dashboard shows it. `feature_names()` derives the mart's columns
from a vocabulary; the module-level feature tuples are those of the default vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Enumerations of the raw contract, in the order the docs, the generator and dbt list them.
LEAD_SOURCES: tuple[str, ...] = (
    "Web",
    "Referral",
    "Partner agent",
    "Event",
    "Social",
    "Email campaign",
    "Walk-in",
    "Call centre",
)
INDUSTRIES: tuple[str, ...] = (
    "Trading",
    "Consulting",
    "E-commerce",
    "Manufacturing",
    "Media",
    "Technology",
    "Logistics",
    "Education",
    "Healthcare",
    "Food & beverage",
    "Real estate",
    "Tourism",
)
LICENSE_TYPES: tuple[str, ...] = (
    "Commercial",
    "Industrial",
    "Service",
    "Media",
    "Educational",
    "Freelance",
)
BUDGET_BANDS: tuple[str, ...] = ("<25k", "25k-50k", "50k-100k", "100k+")
# activity type -> (engagement points in the sales team's rule, (none, one, many with {n}))
DEFAULT_ACTIVITY_TYPES: dict[str, tuple[float, tuple[str, str, str]]] = {
    "website_visit": (
        1, ("no website visits", "visited the website once", "visited the website {n} times")
    ),
    "pricing_page_view": (4, (
        "has not viewed the pricing page",
        "viewed the pricing page once",
        "viewed the pricing page {n} times",
    )),
    "email_open": (1, ("opened no emails", "opened 1 email", "opened {n} emails")),
    "email_click": (
        2, ("clicked no email links", "clicked an email link", "clicked {n} email links")
    ),
    "form_submit": (5, ("submitted no forms", "submitted a form", "submitted {n} forms")),
    "webinar": (5, ("attended no webinars", "attended a webinar", "attended {n} webinars")),
    "call_connected": (
        6, ("no calls connected", "had a call with the team", "had {n} calls with the team")
    ),
    "meeting_booked": (
        10, ("has not booked a meeting", "booked a meeting", "booked {n} meetings")
    ),
    "document_upload": (
        8, ("uploaded no documents", "uploaded a document", "uploaded {n} documents")
    ),
}
ACTIVITY_TYPES: tuple[str, ...] = tuple(DEFAULT_ACTIVITY_TYPES)
# Activity types the derived features name (website_visits, email_opens and the 90-day rates):
# a vocabulary must keep them.
REQUIRED_ACTIVITY_TYPES: tuple[str, ...] = (
    "website_visit", "pricing_page_view", "email_open", "email_click",
)
# Each activity type is counted over these windows, (t - w, t], in the mart.
ACTIVITY_WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
# Windows the derived features name (engagement_score: 30 days; the rates: 90 days).
REQUIRED_WINDOWS_DAYS: tuple[int, ...] = (30, 90)

# The raw landing zone: file (data/raw/<name>.csv) -> required columns, in order.
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "leads": (
        "lead_id",
        "created_at",
        "lead_source",
        "industry",
        "company_size",
        "country",
        "license_type",
        "visa_quota",
        "budget_band",
    ),
    "activities": ("activity_id", "lead_id", "occurred_at", "activity_type"),
    "conversions": ("lead_id", "converted_at", "package_value"),
    # a CRM's field history (Salesforce LeadHistory: LeadId, CreatedDate, Field, OldValue,
    # NewValue): one row per edit of a lead attribute, so the warehouse can rebuild the value
    # as of any snapshot; leads.csv holds the current values
    "lead_attribute_changes": ("lead_id", "changed_at", "field", "old_value", "new_value"),
}
# Raw files an export may lack: a missing one counts as empty (an export without field history
# has no changes; features then use the leads' current values).
OPTIONAL_RAW_FILES: tuple[str, ...] = ("lead_attribute_changes",)
REQUIRED_RAW_FILES: tuple[str, ...] = tuple(n for n in RAW_COLUMNS if n not in OPTIONAL_RAW_FILES)
# A raw table is its file `<name>.csv` plus the part files a nightly increment appends beside it
# (`activities.part-<seq>-<digest>.csv`, ml/landing/merge.py): every file of the raw folder named
# `<name>.*csv`. dbt's sources read the same pattern (models/staging/__sources.yml, and the Spark
# relations of macros/dialect.sql); the names sort in landing order, the base file first.
RAW_TABLE_GLOB = "{name}.*csv"
RAW_PART_GLOB = "{name}.part-*.csv"


def raw_table_files(raw_dir: Path, name: str) -> list[Path]:
    """The files of raw table `name` in `raw_dir` in landing order (the base file first)."""
    return sorted(p for p in Path(raw_dir).glob(RAW_TABLE_GLOB.format(name=name)) if p.is_file())


def raw_part_files(raw_dir: Path, name: str) -> list[Path]:
    """The part files of raw table `name` (nightly increments), oldest first."""
    return sorted(p for p in Path(raw_dir).glob(RAW_PART_GLOB.format(name=name)) if p.is_file())


def remove_raw_parts(raw_dir: Path) -> None:
    """Delete every raw table's part files, newest first: before a whole export replaces the
    base files, so no increment of earlier data is read with it (a kill midway leaves the base
    files with the oldest parts: the activities of an earlier night, no row of a later one)."""
    for name in RAW_COLUMNS:
        for part in reversed(raw_part_files(raw_dir, name)):
            part.unlink(missing_ok=True)


# The leads.csv columns a change may touch (the attributes; not the id or created_at).
ATTRIBUTE_FIELDS: tuple[str, ...] = RAW_COLUMNS["leads"][2:]

# Feature columns of the `lead_features` mart and the `lead_scoring` feature service, in mart
# order (after the key `lead_id` and the timestamp `snapshot_ts`).
CATEGORICAL_FEATURES: tuple[str, ...] = (
    "lead_source",
    "industry",
    "country",
    "license_type",
    "budget_band",
)
# The lead attributes treated as categories, with the default closed vocabulary of each (value ->
# its wording in a reason, or None for the attribute's generic phrase); an empty mapping is free
# text. dbt staging nulls a lead_source, license_type or budget_band outside its list; landing
# folds every listed attribute to its list.
DEFAULT_CATEGORICALS: dict[str, dict[str, str | None]] = {
    "lead_source": {
        "Web": "came in through the website",
        "Referral": "referred by a customer",
        "Partner agent": "referred by a partner agent",
        "Event": "met at an event",
        "Social": "came in through social media",
        "Email campaign": "came in through an email campaign",
        "Walk-in": "walked into the office",
        "Call centre": "came in through the call centre",
    },
    "industry": dict.fromkeys(INDUSTRIES),
    "country": {},
    "license_type": dict.fromkeys(LICENSE_TYPES),
    "budget_band": {
        "<25k": "budget under AED 25k",
        "25k-50k": "budget of AED 25k–50k",
        "50k-100k": "budget of AED 50k–100k",
        "100k+": "budget over AED 100k",
    },
}
# The enumerations dbt staging checks (the other categoricals are folded by landing only).
WAREHOUSE_ENUMS: tuple[str, ...] = ("lead_source", "license_type", "budget_band")


def activity_count_features(
    activity_types: Iterable[str], windows: Iterable[int]
) -> tuple[str, ...]:
    """The windowed count columns `n_<type>_<w>d`, type-major (the mart's order)."""
    windows = tuple(windows)
    return tuple(f"n_{t}_{w}d" for t in activity_types for w in windows)


def numeric_features(activity_types: Iterable[str], windows: Iterable[int]) -> tuple[str, ...]:
    """The mart's numeric feature columns for a vocabulary, in mart order."""
    return (
        "company_size",
        "visa_quota",
        "days_since_created",
        *activity_count_features(activity_types, windows),
        "website_visits",
        "email_opens",
        "days_since_last_activity",
        "email_click_rate_90d",
        "pricing_view_rate_90d",
        "engagement_score",
    )


def feature_names(
    categoricals: Iterable[str], activity_types: Iterable[str], windows: Iterable[int]
) -> tuple[str, ...]:
    """Every feature column of the `lead_features` mart for a vocabulary, in mart order."""
    return (*categoricals, *numeric_features(activity_types, windows))


# Feature columns stored as doubles; the categoricals are text, every other feature an integer.
DOUBLE_FEATURES: tuple[str, ...] = (
    "days_since_last_activity", "email_click_rate_90d", "pricing_view_rate_90d", "engagement_score",
)


def feature_column_types(
    categoricals: Iterable[str], activity_types: Iterable[str], windows: Iterable[int]
) -> dict[str, str]:
    """The `lead_features` mart's columns (key, timestamp, features) -> string | timestamp |
    integer | double: the contract dbt's `matches_feature_columns` test holds the mart to."""
    categoricals = tuple(categoricals)
    types = {"lead_id": "string", "snapshot_ts": "timestamp"}
    for name in feature_names(categoricals, activity_types, windows):
        types[name] = (
            "string" if name in categoricals else "double" if name in DOUBLE_FEATURES else "integer"
        )
    return types


NUMERIC_FEATURES: tuple[str, ...] = numeric_features(ACTIVITY_TYPES, ACTIVITY_WINDOWS_DAYS)
FEATURES: tuple[str, ...] = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES)
