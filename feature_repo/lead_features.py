"""Feast declarations of the `lead_features` mart: entity, source, feature views, feature service.

The features are defined once, in dbt SQL (dbt_project/models/marts/lead_features.sql); this file
only declares them. The Parquet path comes from the settings: `ml.feature_store` declares with
the `Settings` it is given (tests use a temporary data dir, production its own); the Feast CLI
(`feast -c feature_repo apply`), which imports this file alone, gets the settings file's own.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.types import Float64, Int32, String
from feast.value_type import ValueType

from ml.contract import ACTIVITY_TYPES, ACTIVITY_WINDOWS_DAYS
from ml.feature_store import definition_settings

_settings = definition_settings()

OWNER = "lead-scoring"
SOURCE_MODEL = "lead_features"

# A snapshot is valid until the next one: with weekly snapshots, an instant between two of them
# must find the earlier one (at most one interval back), and an instant more than one interval
# after a lead's last snapshot (the lead closed) must find nothing rather than stale features.
# So the TTL is exactly the snapshot interval. Online reads of Feast's SQLite store do not apply
# the TTL; there the refresh removes closed leads instead (ml/online_refresh.py).
SNAPSHOT_TTL = timedelta(days=_settings.features.snapshot_interval_days)

lead = Entity(
    name="lead",
    join_keys=["lead_id"],
    value_type=ValueType.STRING,
    description="A CRM lead (an applicant for a business licence), keyed by its CRM id.",
)

lead_features_source = FileSource(
    name="lead_features_source",
    path=str(_settings.paths.marts_dir / f"{SOURCE_MODEL}.parquet"),
    file_format=ParquetFormat(),
    timestamp_field="snapshot_ts",
    description="dbt mart lead_features: one row per open lead per weekly snapshot (UTC).",
)

# Declaring the join key as a field spares `feast apply` from reading the Parquet to infer it.
_lead_id = Field(name="lead_id", dtype=String, description="CRM lead id, e.g. L0001234.")

lead_profile = FeatureView(
    name="lead_profile",
    entities=[lead],
    ttl=SNAPSHOT_TTL,
    schema=[
        _lead_id,
        Field(name="lead_source", dtype=String, description="Channel the lead came in by."),
        Field(name="industry", dtype=String, description="Industry of the applicant's business."),
        Field(name="country", dtype=String, description="Country of the applicant (ISO name)."),
        Field(name="license_type", dtype=String, description="Licence type applied for."),
        Field(name="budget_band", dtype=String, description="Budget band in AED, e.g. 25k-50k."),
        Field(name="company_size", dtype=Int32, description="Number of employees."),
        Field(name="visa_quota", dtype=Int32, description="Visas requested."),
        Field(
            name="days_since_created",
            dtype=Int32,
            description="Whole days from lead creation to the snapshot.",
        ),
    ],
    source=lead_features_source,
    online=True,
    description="What the lead told us: firmographics from the CRM form, and the lead's age.",
    tags={"owner": OWNER, "source_model": SOURCE_MODEL},
)

_activity_counts = [
    Field(
        name=f"n_{activity}_{days}d",
        dtype=Int32,
        description=f"Number of {activity} activities in the {days} days up to the snapshot.",
    )
    for activity in ACTIVITY_TYPES
    for days in ACTIVITY_WINDOWS_DAYS
]

lead_engagement = FeatureView(
    name="lead_engagement",
    entities=[lead],
    ttl=SNAPSHOT_TTL,
    schema=[
        _lead_id,
        *_activity_counts,
        Field(name="website_visits", dtype=Int32, description="Website visits since creation."),
        Field(name="email_opens", dtype=Int32, description="Email opens since creation."),
        Field(
            name="days_since_last_activity",
            dtype=Float64,
            description="Days from the last activity to the snapshot; null when none.",
        ),
        Field(
            name="email_click_rate_90d",
            dtype=Float64,
            description="Email clicks / opens over 90 days; null when no opens.",
        ),
        Field(
            name="pricing_view_rate_90d",
            dtype=Float64,
            description="Pricing-page views / website visits over 90 days; null when no visits.",
        ),
        Field(
            name="engagement_score",
            dtype=Float64,
            description="The sales team's hand-weighted engagement rule, 0-100.",
        ),
    ],
    source=lead_features_source,
    online=True,
    description="What the lead did: activity counts over rolling windows, recency and rates.",
    tags={"owner": OWNER, "source_model": SOURCE_MODEL},
)

# Exactly the model's features. Give the service a new name (e.g. lead_scoring_v2, set in the
# settings file) when its feature list changes, so models trained on the old one keep working.
lead_scoring = FeatureService(
    name=_settings.features.feature_service,
    features=[lead_profile, lead_engagement],
    description="The features of the lead-conversion model, for training, batch and online.",
    tags={"owner": OWNER},
)
