-- Point-in-time guarantee: recount every activity window of lead_features by brute force (a plain
-- range join on the raw timestamps, independent of the bucket/ASOF logic) and fail on any row
-- where the two differ, or where the last activity lies after the snapshot. Counting an activity
-- stamped after snapshot_ts would make the mart's count exceed the recount.
-- The brute force is a range join, so above ~5k leads it checks a deterministic sample of leads.
{%- set windows = activity_windows() %}

with lead_count as (

    select count(*) as n_leads from {{ ref('stg_crm__leads') }}

),

features as (

    select lead_features.*
    from {{ ref('lead_features') }} as lead_features
    cross join lead_count
    where hash(lead_features.lead_id) % greatest(1, lead_count.n_leads // 5000) = 0

),

activities as (

    select lead_id, activity_type, occurred_at from {{ ref('stg_crm__activities') }}

),

recount as (

    select
        features.lead_id,
        features.snapshot_ts,
        {%- for t in activity_types() %}
        {%- for w in windows %}
        count(activities.lead_id) filter (
            where activities.activity_type = '{{ t }}'
            and activities.occurred_at > features.snapshot_ts - {{ days(w) }}
        ) as n_{{ t }}_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        count(activities.lead_id) filter (where activities.activity_type = 'website_visit')
            as website_visits,
        max(activities.occurred_at) as last_occurred_at
    from features
    left join activities
        on features.lead_id = activities.lead_id
        and activities.occurred_at <= features.snapshot_ts
    group by features.lead_id, features.snapshot_ts

),

mismatches as (

    select
        features.lead_id,
        features.snapshot_ts
    from features
    inner join recount
        on features.lead_id = recount.lead_id
        and features.snapshot_ts = recount.snapshot_ts
    where
        features.website_visits != recount.website_visits
        or features.days_since_last_activity is distinct from
            (epoch(features.snapshot_ts) - epoch(recount.last_occurred_at)) / 86400.0
        or features.days_since_last_activity < 0
        {%- for t in activity_types() %}
        {%- for w in windows %}
        or features.n_{{ t }}_{{ w }}d != recount.n_{{ t }}_{{ w }}d
        {%- endfor %}
        {%- endfor %}

)

select * from mismatches
