with base as (

    select * from {{ ref('base_crm__lead_attribute_changes') }}

),

accepted as (

    select
        lead_id,
        field,
        old_value,
        new_value,
        changed_at
    from base
    where rejection_reason is null

)

select * from accepted
