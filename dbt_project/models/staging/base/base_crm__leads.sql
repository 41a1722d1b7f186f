-- One row per raw leads.csv row: the raw text, the typed values and why the row is rejected
-- (null when accepted). stg_crm__leads and stg_crm__leads_rejected split this table.
with source as (

    select * from {{ source('crm', 'leads') }}

),

typed as (

    select
        lead_id as lead_id_raw,
        created_at as created_at_raw,
        lead_source as lead_source_raw,
        industry as industry_raw,
        company_size as company_size_raw,
        country as country_raw,
        license_type as license_type_raw,
        visa_quota as visa_quota_raw,
        budget_band as budget_band_raw,
        {{ clean_text('lead_id') }} as lead_id,
        {{ clean_text('lead_source') }} as lead_source,
        {{ clean_text('industry') }} as industry,
        {{ clean_text('country') }} as country,
        {{ clean_text('license_type') }} as license_type,
        {{ clean_text('budget_band') }} as budget_band,
        try_cast(trim(company_size) as integer) as company_size,
        try_cast(trim(visa_quota) as integer) as visa_quota,
        {{ parse_utc_timestamp('created_at') }} as created_at
    from source

),

checked as (

    -- the first problem found is the reason; duplicates are judged among clean rows only
    select
        *,
        case
            when lead_id is null then 'null_id'
            when created_at is null then 'unparseable_timestamp'
            when created_at > {{ future_cutoff() }} then 'future_timestamp'
            when {{ is_invalid_non_negative('company_size_raw', 'company_size') }}
                then 'invalid_company_size'
            when {{ is_invalid_non_negative('visa_quota_raw', 'visa_quota') }}
                then 'invalid_visa_quota'
            when {{ is_unknown_enum('lead_source', 'lead_source') }} then 'unknown_lead_source'
            when {{ is_unknown_enum('license_type', 'license_type') }} then 'unknown_license_type'
            when {{ is_unknown_enum('budget_band', 'budget_band') }} then 'unknown_budget_band'
        end as row_problem
    from typed

),

ranked as (

    -- clean rows rank first, so a clean row with rank > 1 duplicates a clean winner; the winner
    -- is deterministic: earliest timestamp, then the raw text (identical rows are interchangeable)
    select
        *,
        row_number() over (
            partition by lead_id
            order by row_problem nulls first, created_at, lead_source_raw, industry_raw,
                company_size_raw, country_raw, license_type_raw, visa_quota_raw, budget_band_raw
        ) as id_rank
    from checked

),

classified as (

    select
        * exclude (row_problem, id_rank),
        coalesce(row_problem, case when id_rank > 1 then 'duplicate_id' end) as rejection_reason
    from ranked

),

final as (

    -- the raw text is kept for rejected rows only: accepted rows have their typed values, and
    -- not storing their text a second time halves what this table writes
    select
        {{ raw_text_for_rejected_only([
            'lead_id_raw', 'created_at_raw', 'lead_source_raw', 'industry_raw', 'company_size_raw',
            'country_raw', 'license_type_raw', 'visa_quota_raw', 'budget_band_raw',
        ]) }}
    from classified

)

select * from final
