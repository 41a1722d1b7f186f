with base as (

    select * from {{ ref('base_crm__leads') }}

),

accepted as (

    select
        lead_id,
        lead_source,
        industry,
        country,
        license_type,
        budget_band,
        company_size,
        visa_quota,
        created_at
    from base
    where rejection_reason is null

)

select * from accepted
