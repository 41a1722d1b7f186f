with base as (

    select * from {{ ref('base_crm__lead_attribute_changes') }}

),

rejected as (

    select
        rejection_reason,
        lead_id_raw as lead_id,
        changed_at_raw as changed_at,
        field_raw as field,
        old_value_raw as old_value,
        new_value_raw as new_value,
        line_raw as raw_line
    from base
    where rejection_reason is not null

)

select * from rejected
