-- One row per attribute value of an accepted lead that staging could not use and set to null:
-- the lead is kept and scored, its bad value is listed here with the reason.
with base as (

    select * from {{ ref('base_crm__leads') }}
    where rejection_reason is null

),

{% set attributes = ['lead_source', 'license_type', 'budget_band', 'company_size', 'visa_quota'] %}

issues as (

    {% for attribute in attributes %}
    select
        lead_id,
        '{{ attribute }}' as column_name,
        {{ attribute }}_raw as raw_value,
        {{ attribute }}_issue as reason
    from base
    where {{ attribute }}_issue is not null
    {{ "union all" if not loop.last }}
    {% endfor %}

)

select * from issues
