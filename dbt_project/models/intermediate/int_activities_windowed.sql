-- One row per open lead per snapshot: activity counts per type over (t - w, t] for each window w of
-- the vocabulary (7, 30 and 90 days by default), all activities up to t, and the last activity at
-- or before t.
--
-- Why not a range join of activities with snapshots: at 30M activities and 13 weekly snapshots per
-- 90 days that is hundreds of millions of joined rows. Instead each window is the difference of
-- two running totals from int_activities_accumulated, each found by an ASOF join (the last bucket
-- ending at or before t, and at or before t - w). macros/dialect.sql's asof_left_joins makes them
-- chained ASOF joins on DuckDB and one shared pass on Spark (which has no ASOF join).
-- A view: lead_features reads it once, so a table would only be written to be read back.
{{ config(materialized='view') }}

{%- set windows = activity_windows() %}
{#- the running totals at t, and at t - w for each window w: what the w-day window must not count -#}
{%- set lookups = [['at_t', 'lead_snapshots.snapshot_ts']] %}
{%- for w in windows %}
    {%- do lookups.append(['before_' ~ w ~ 'd', 'lead_snapshots.snapshot_ts - ' ~ days(w)]) %}
{%- endfor %}

with lead_snapshots as (

    select {{ key_hash('lead_id') }} as lead_key, lead_id, snapshot_ts, created_at
    -- every open-lead snapshot, or on a nightly increment only the rows it redoes
    from {{ ref('int_feature_rows_to_build') }}

),

running_totals as (

    select * from {{ ref('int_activities_accumulated') }}

),

windowed as (

    select
        lead_snapshots.lead_id,
        lead_snapshots.snapshot_ts,
        -- carried through so lead_features needs no second join with the lead snapshots
        lead_snapshots.created_at,
        {%- for t in activity_types() %}
        {%- for w in windows %}
        cast(
            coalesce(at_t.cum_{{ t }}, 0) - coalesce(before_{{ w }}d.cum_{{ t }}, 0) as integer
        ) as n_{{ t }}_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        cast(coalesce(at_t.cum_website_visit, 0) as integer) as website_visits,
        cast(coalesce(at_t.cum_email_open, 0) as integer) as email_opens,
        at_t.last_occurred_at
    from lead_snapshots
    {{ asof_left_joins(
        'running_totals', 'lead_key', 'bucket_end', 'lead_snapshots', 'lead_snapshots.lead_key',
        lookups
    ) }}

)

select * from windowed
