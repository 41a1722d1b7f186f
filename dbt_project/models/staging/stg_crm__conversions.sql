with base as (

    select * from {{ ref('base_crm__conversions') }}

),

accepted as (

    select
        lead_id,
        package_value,
        converted_at
    from base
    where rejection_reason is null

)

select * from accepted
