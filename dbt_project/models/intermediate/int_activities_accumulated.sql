-- One row per lead per time bucket with activity: running totals of each activity type up to the
-- bucket's end, and the last activity time within it. int_activities_windowed turns these into
-- windows with ASOF joins (see there for why).
--
-- A bucket (previous end, bucket_end] ends at every midnight and, when the as-of instant is not at
-- midnight, also at that time of day. Every snapshot (Monday midnights and the as-of instant) and
-- every snapshot minus whole days is then a bucket end, so "all buckets ending <= q" is exactly
-- "all activities with occurred_at <= q": the buckets lose no precision.
-- lead_key = hash(lead_id): integer keys make the grouping, window and ASOF joins several times
-- faster than text keys; a singular test fails the build on a hash collision.
--
-- Incremental (macros/incremental.sql): a nightly build redoes only the leads whose inputs changed.
{{ config(
    materialized=incremental_materialization(),
    incremental_strategy='append',
    pre_hook="{{ delete_changed_leads('lead_key', key_hash('lead_id')) }}",
) }}
-- depends_on: {{ ref('int_leads_changed') }}
with activities as (

    select lead_id, activity_type, occurred_at from {{ ref('stg_crm__activities') }}
    {%- if is_incremental() %}
    where lead_id in (select lead_id from {{ ref('int_leads_changed') }})
    {%- endif %}

),

as_of as (

    select max(as_of_ts) as as_of_ts from {{ ref('int_snapshots_scheduled') }}

),

bucket_offset as (

    select coalesce(as_of_ts - date_trunc('day', as_of_ts), interval 0 second) as day_offset
    from as_of

),

bucketed as (

    select
        {{ key_hash('activities.lead_id') }} as lead_key,
        activities.activity_type,
        activities.occurred_at,
        case
            when activities.occurred_at = date_trunc('day', activities.occurred_at)
                then activities.occurred_at
            when activities.occurred_at
                <= date_trunc('day', activities.occurred_at) + bucket_offset.day_offset
                then date_trunc('day', activities.occurred_at) + bucket_offset.day_offset
            else date_trunc('day', activities.occurred_at) + interval 1 day
        end as bucket_end
    from activities
    cross join bucket_offset

),

per_bucket as (

    select
        lead_key,
        bucket_end,
        {%- for t in activity_types() %}
        count(*) filter (where activity_type = '{{ t }}') as n_{{ t }},
        {%- endfor %}
        max(occurred_at) as last_occurred_at
    from bucketed
    group by lead_key, bucket_end

),

running_totals as (

    select
        lead_key,
        bucket_end,
        last_occurred_at,
        {%- for t in activity_types() %}
        cast(sum(n_{{ t }}) over lead_history as integer) as cum_{{ t }}{{ "," if not loop.last }}
        {%- endfor %}
    from per_bucket
    window lead_history as (
        partition by lead_key order by bucket_end rows between unbounded preceding and current row
    )

)

select * from running_totals
