"""The raw contract and the mart's feature columns of docs/contracts.md, in one place.

Python reads the enumerations, the raw files' columns and the model's feature names from here:
the generator, the landing-zone check, the model, the Feast declarations and the tests. The dbt
SQL keeps its own copy of the enumerations in dbt_project/macros/crm_enums.sql (Jinja cannot
import Python); tests/data/test_contract.py checks that the two agree.
"""

from __future__ import annotations

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
ACTIVITY_TYPES: tuple[str, ...] = (
    "website_visit",
    "pricing_page_view",
    "email_open",
    "email_click",
    "form_submit",
    "webinar",
    "call_connected",
    "meeting_booked",
    "document_upload",
)
# Each activity type is counted over these windows, (t - w, t], in the mart.
ACTIVITY_WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)

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
NUMERIC_FEATURES: tuple[str, ...] = (
    "company_size",
    "visa_quota",
    "days_since_created",
    *(f"n_{t}_{w}d" for t in ACTIVITY_TYPES for w in ACTIVITY_WINDOWS_DAYS),
    "website_visits",
    "email_opens",
    "days_since_last_activity",
    "email_click_rate_90d",
    "pricing_view_rate_90d",
    "engagement_score",
)
FEATURES: tuple[str, ...] = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES)
