-- One row per lead per snapshot at which the lead is open: created_at <= snapshot_ts, not
-- converted at or before snapshot_ts, and no older than max_lead_age_days.
with leads as (

    select lead_id, created_at from {{ ref('stg_crm__leads') }}

),

conversions as (

    select lead_id, converted_at from {{ ref('stg_crm__conversions') }}

),

snapshots as (

    select snapshot_ts from {{ ref('int_snapshots_scheduled') }}

),

in_age_range as (

    -- a band join (two inequalities): DuckDB runs it as an IEJoin, not a cross product
    select
        leads.lead_id,
        snapshots.snapshot_ts,
        leads.created_at
    from leads
    inner join snapshots
        on snapshots.snapshot_ts >= leads.created_at
        and snapshots.snapshot_ts <= leads.created_at + {{ days(var('max_lead_age_days')) }}

),

open_leads as (

    select
        in_age_range.lead_id,
        in_age_range.snapshot_ts,
        in_age_range.created_at,
        conversions.converted_at
    from in_age_range
    left join conversions on in_age_range.lead_id = conversions.lead_id
    where conversions.converted_at is null or conversions.converted_at > in_age_range.snapshot_ts

)

select * from open_leads
