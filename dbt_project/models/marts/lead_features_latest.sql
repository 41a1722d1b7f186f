-- One row per lead open at the as-of instant: the rows of lead_features a batch scoring run or the
-- online store needs today.
with features as (

    select * from {{ ref('lead_features') }}

),

as_of as (

    select max(as_of_ts) as as_of_ts from {{ ref('int_snapshots_scheduled') }}

),

latest as (

    select features.*
    from features
    inner join as_of on features.snapshot_ts = as_of.as_of_ts

)

select * from latest
