with base as (

    select * from {{ ref('base_crm__activities') }}

),

accepted as (

    select
        activity_id,
        lead_id,
        activity_type,
        occurred_at
    from base
    where rejection_reason is null

)

select * from accepted
