with base as (

    select * from {{ ref('base_crm__activities') }}

),

rejected as (

    select
        rejection_reason,
        activity_id_raw as activity_id,
        lead_id_raw as lead_id,
        occurred_at_raw as occurred_at,
        activity_type_raw as activity_type,
        line_raw as raw_line
    from base
    where rejection_reason is not null

)

select * from rejected
