-- One row per lead per snapshot while the lead is open (docs/contracts.md). Only data stamped at or
-- before snapshot_ts is used: int_activities_windowed and int_lead_attributes_snapshotted (the
-- attributes as of the snapshot, from the change history), both one row per open lead per
-- snapshot.
--
-- Incremental (macros/incremental.sql): a nightly build redoes the rows of leads whose inputs
-- changed and adds tonight's snapshot; the fingerprints it was built from are stored after it.
{{ config(
    materialized=incremental_materialization(),
    incremental_strategy='append',
    pre_hook=[
        "{{ delete_changed_leads('lead_id') }}",
        "{{ delete_unscheduled_snapshots() }}",
    ],
    post_hook="{{ store_built_fingerprints() }}",
) }}
-- (int_activities_windowed starts from int_feature_rows_to_build: only the rows to redo)
-- depends_on: {{ ref('int_leads_changed') }}, {{ ref('int_snapshots_scheduled') }}
with activity_windows as (

    select * from {{ ref('int_activities_windowed') }}

),

attributes as (

    select * from {{ ref('int_lead_attributes_snapshotted') }}

),

joined as (

    select
        activity_windows.lead_id,
        activity_windows.snapshot_ts,
        attributes.lead_source,
        attributes.industry,
        attributes.country,
        attributes.license_type,
        attributes.budget_band,
        attributes.company_size,
        attributes.visa_quota,
        floor(
            ({{ epoch_seconds('activity_windows.snapshot_ts') }}
                - {{ epoch_seconds('activity_windows.created_at') }}) / 86400
        ) as days_since_created,
        {{ star_except(
            ['lead_id', 'snapshot_ts', 'created_at', 'last_occurred_at'], 'activity_windows'
        ) }},
        ({{ epoch_seconds('activity_windows.snapshot_ts') }}
            - {{ epoch_seconds('activity_windows.last_occurred_at') }})
            / 86400.0 as days_since_last_activity
    from activity_windows
    inner join attributes
        on activity_windows.lead_id = attributes.lead_id
        and activity_windows.snapshot_ts = attributes.snapshot_ts

),

final as (

    select
        cast(lead_id as string) as lead_id,
        cast(snapshot_ts as timestamp) as snapshot_ts,
        cast(lead_source as string) as lead_source,
        cast(industry as string) as industry,
        cast(country as string) as country,
        cast(license_type as string) as license_type,
        cast(budget_band as string) as budget_band,
        cast(company_size as integer) as company_size,
        cast(visa_quota as integer) as visa_quota,
        cast(days_since_created as integer) as days_since_created,
        {%- for t in activity_types() %}
        {%- for w in activity_windows() %}
        cast(n_{{ t }}_{{ w }}d as integer) as n_{{ t }}_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        cast(website_visits as integer) as website_visits,
        cast(email_opens as integer) as email_opens,
        cast(days_since_last_activity as double) as days_since_last_activity,
        cast(n_email_click_90d / nullif(n_email_open_90d, 0) as double) as email_click_rate_90d,
        cast(
            n_pricing_page_view_90d / nullif(n_website_visit_90d, 0) as double
        ) as pricing_view_rate_90d,
        cast({{ engagement_score('n_{}_30d') }} as double) as engagement_score
    from joined

)

select * from final
