-- The snapshot spine: every point in time features are computed for. Mondays 00:00 UTC on a grid
-- anchored at Monday 1970-01-05 and stepping by snapshot_interval_days (so adding data never moves
-- the grid), from the first creation up to the as-of instant, plus the as-of instant itself.
with leads as (

    select created_at from {{ ref('stg_crm__leads') }}

),

activities as (

    select occurred_at from {{ ref('stg_crm__activities') }}

),

conversions as (

    select converted_at from {{ ref('stg_crm__conversions') }}

),

data_bounds as (

    select
        (select min(created_at) from leads) as first_ts,
        greatest(
            (select max(created_at) from leads),
            (select max(occurred_at) from activities),
            (select max(converted_at) from conversions)
        ) as last_ts

),

as_of as (

    -- an explicit as_of wins; otherwise midnight after the latest accepted timestamp
    select
        first_ts,
        coalesce({{ as_of_literal() }}, date_trunc('day', last_ts) + interval 1 day) as as_of_ts
    from data_bounds

),

grid as (

    select
        as_of_ts,
        timestamp '1970-01-05 00:00:00'
        + {{ days(var('snapshot_interval_days')) }}
        * cast(ceil(
            ({{ epoch_seconds('first_ts') }} - {{ epoch_seconds("timestamp '1970-01-05 00:00:00'") }})
            / (86400.0 * {{ var('snapshot_interval_days') }})
        ) as bigint) as first_snapshot_ts
    from as_of
    where first_ts is not null

),

grid_snapshots as (

    select
        {{ timestamp_series(
            'first_snapshot_ts', 'as_of_ts', days(var('snapshot_interval_days'))
        ) }} as snapshot_ts,
        as_of_ts
    from grid
    where first_snapshot_ts <= as_of_ts

),

snapshots as (

    select snapshot_ts, as_of_ts from grid_snapshots
    union
    select as_of_ts as snapshot_ts, as_of_ts from as_of where as_of_ts is not null

),

final as (

    select
        cast(snapshot_ts as timestamp) as snapshot_ts,
        cast(as_of_ts as timestamp) as as_of_ts,
        snapshot_ts = as_of_ts as is_as_of
    from snapshots

)

select * from final
