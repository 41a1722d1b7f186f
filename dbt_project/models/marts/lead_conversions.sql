-- One row per accepted lead: when it was created and, if it converted by the as-of instant,
-- when and for how much. The outcome table monitoring joins scores to (matured cohorts,
-- lead-to-close time, A/B reports).
with leads as (

    select lead_id, created_at from {{ ref('stg_crm__leads') }}

),

conversions as (

    select lead_id, converted_at, package_value from {{ ref('stg_crm__conversions') }}

),

final as (

    select
        cast(leads.lead_id as string) as lead_id,
        cast(leads.created_at as timestamp) as created_at,
        cast(conversions.converted_at as timestamp) as converted_at,
        cast(conversions.package_value as double) as package_value
    from leads
    left join conversions on leads.lead_id = conversions.lead_id

)

select * from final
