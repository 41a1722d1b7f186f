with base as (

    select * from {{ ref('base_crm__leads') }}

),

rejected as (

    select
        rejection_reason,
        lead_id_raw as lead_id,
        created_at_raw as created_at,
        lead_source_raw as lead_source,
        industry_raw as industry,
        company_size_raw as company_size,
        country_raw as country,
        license_type_raw as license_type,
        visa_quota_raw as visa_quota,
        budget_band_raw as budget_band,
        line_raw as raw_line
    from base
    where rejection_reason is not null

)

select * from rejected
