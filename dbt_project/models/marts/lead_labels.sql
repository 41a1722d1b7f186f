-- One row per (lead_id, snapshot_ts) of lead_features whose label window has matured
-- (snapshot_ts + label_window_days <= as-of): did the lead convert within the window?
with features as (

    select lead_id, snapshot_ts from {{ ref('lead_features') }}

),

conversions as (

    select lead_id, converted_at from {{ ref('stg_crm__conversions') }}

),

as_of as (

    select max(as_of_ts) as as_of_ts from {{ ref('int_snapshots_scheduled') }}

),

matured as (

    select
        features.lead_id,
        features.snapshot_ts,
        features.snapshot_ts + {{ days(var('label_window_days')) }} as window_end_ts
    from features
    inner join as_of
        on features.snapshot_ts + {{ days(var('label_window_days')) }} <= as_of.as_of_ts

),

final as (

    select
        cast(matured.lead_id as string) as lead_id,
        cast(matured.snapshot_ts as timestamp) as snapshot_ts,
        -- the lead is open at snapshot_ts, so any conversion is after it: (t, t + window]
        cast(coalesce(conversions.converted_at <= matured.window_end_ts, false) as integer)
            as converted_within_window,
        cast(conversions.converted_at as timestamp) as converted_at,
        cast({{ var('label_window_days') }} as integer) as label_window_days
    from matured
    left join conversions on matured.lead_id = conversions.lead_id

)

select * from final
