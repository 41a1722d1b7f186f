with base as (

    select * from {{ ref('base_crm__conversions') }}

),

rejected as (

    select
        rejection_reason,
        lead_id_raw as lead_id,
        converted_at_raw as converted_at,
        package_value_raw as package_value,
        line_raw as raw_line
    from base
    where rejection_reason is not null

)

select * from rejected
