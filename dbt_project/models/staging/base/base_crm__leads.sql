-- One row per raw leads.csv row: the raw text, the typed values and why the row is rejected
-- (null when accepted). stg_crm__leads and stg_crm__leads_rejected split this table.
-- Only a row without a usable key is rejected: a malformed line (malformed_line), a null id, an unparseable or future created_at, or
-- a duplicated id. A bad attribute value (an unknown lead_source, an unparseable company_size)
-- does not cost the lead: the value becomes null, the reason is kept in <column>_issue, and
-- stg_crm__lead_attribute_issues lists it.
with source as (

    {{ raw_lines('leads', [
        'lead_id', 'created_at', 'lead_source', 'industry', 'company_size', 'country',
        'license_type', 'visa_quota', 'budget_band',
    ]) }}

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
        line_raw,
        {{ clean_text('lead_id') }} as lead_id,
        {{ fold_enum('lead_source', 'lead_source') }} as lead_source,
        {{ clean_text('industry') }} as industry,
        {{ clean_text('country') }} as country,
        {{ fold_enum('license_type', 'license_type') }} as license_type,
        {{ fold_enum('budget_band', 'budget_band') }} as budget_band,
        {{ parse_number('company_size') }} as company_size,
        {{ parse_number('visa_quota') }} as visa_quota,
        {{ parse_utc_timestamp('created_at') }} as created_at
    from source

),

checked as (

    -- the row's problem (its key) and, per attribute, the problem with its value
    select
        lead_id, created_at, industry, country,
        lead_id_raw, created_at_raw, lead_source_raw, industry_raw, company_size_raw,
        country_raw, license_type_raw, visa_quota_raw, budget_band_raw, line_raw,
        case
            when line_raw is not null then 'malformed_line'
            when lead_id is null then 'null_id'
            when created_at is null then 'unparseable_timestamp'
            when created_at > {{ future_cutoff() }} then 'future_timestamp'
        end as row_problem,
        case when {{ is_invalid_non_negative('company_size_raw', 'company_size') }}
            then 'invalid_company_size' end as company_size_issue,
        case when {{ is_invalid_non_negative('visa_quota_raw', 'visa_quota') }}
            then 'invalid_visa_quota' end as visa_quota_issue,
        case when {{ is_unknown_enum('lead_source', 'lead_source') }}
            then 'unknown_lead_source' end as lead_source_issue,
        case when {{ is_unknown_enum('license_type', 'license_type') }}
            then 'unknown_license_type' end as license_type_issue,
        case when {{ is_unknown_enum('budget_band', 'budget_band') }}
            then 'unknown_budget_band' end as budget_band_issue,
        company_size, visa_quota, lead_source, license_type, budget_band
    from typed

),

cleaned as (

    -- a value with an issue becomes null: the model treats it as missing
    select
        {{ star_except(
            ['company_size', 'visa_quota', 'lead_source', 'license_type', 'budget_band']
        ) }},
        case when company_size_issue is null then company_size end as company_size,
        case when visa_quota_issue is null then visa_quota end as visa_quota,
        case when lead_source_issue is null then lead_source end as lead_source,
        case when license_type_issue is null then license_type end as license_type,
        case when budget_band_issue is null then budget_band end as budget_band
    from checked

),

ranked as (

    -- of rows sharing an id, the usable rows rank first and of those the most recent (latest
    -- created_at), then the one with fewer attribute issues; the raw text breaks the remaining
    -- ties so the winner is deterministic (identical rows are interchangeable)
    select
        *,
        row_number() over (
            partition by lead_id
            order by row_problem nulls first, created_at desc,
                (company_size_issue is not null)::int + (visa_quota_issue is not null)::int
                + (lead_source_issue is not null)::int + (license_type_issue is not null)::int
                + (budget_band_issue is not null)::int,
                lead_source_raw, industry_raw, company_size_raw, country_raw, license_type_raw,
                visa_quota_raw, budget_band_raw
        ) as id_rank
    from cleaned

),

classified as (

    select
        {{ star_except(['row_problem', 'id_rank']) }},
        coalesce(row_problem, case when id_rank > 1 then 'duplicate_id' end) as rejection_reason
    from ranked

),

final as (

    -- the raw text is kept for rejected rows and for values with an issue only: accepted rows
    -- have their typed values, and not storing their text a second time halves this table
    select
        {{ raw_text_for_rejected_only([
            'lead_id_raw', 'created_at_raw', 'lead_source_raw', 'industry_raw', 'company_size_raw',
            'country_raw', 'license_type_raw', 'visa_quota_raw', 'budget_band_raw',
        ], {
            'company_size_raw': 'company_size_issue', 'visa_quota_raw': 'visa_quota_issue',
            'lead_source_raw': 'lead_source_issue', 'license_type_raw': 'license_type_issue',
            'budget_band_raw': 'budget_band_issue',
        }) }}
    from classified

)

select * from final
