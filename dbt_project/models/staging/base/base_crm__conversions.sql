-- One row per raw conversions.csv row: raw text, typed values and the rejection reason (null when
-- accepted). A lead converts at most once: of several clean rows the earliest conversion wins.
with source as (

    {{ raw_lines('conversions', ['lead_id', 'converted_at', 'package_value']) }}

),

leads as (

    select lead_id, created_at from {{ ref('stg_crm__leads') }}

),

typed as (

    select
        lead_id as lead_id_raw,
        converted_at as converted_at_raw,
        package_value as package_value_raw,
        line_raw,
        {{ clean_text('lead_id') }} as lead_id,
        {{ parse_number('package_value', 'decimal(18, 2)') }} as package_value,
        {{ parse_utc_timestamp('converted_at') }} as converted_at
    from source

),

checked as (

    select
        typed.*,
        case
            when typed.line_raw is not null then 'malformed_line'
            when typed.lead_id is null then 'null_id'
            when typed.converted_at is null then 'unparseable_timestamp'
            when typed.converted_at > {{ future_cutoff() }} then 'future_timestamp'
            when {{ is_invalid_non_negative('typed.package_value_raw', 'typed.package_value') }}
                then 'invalid_package_value'
            when leads.lead_id is null then 'unknown_lead'
            when typed.converted_at < leads.created_at then 'conversion_before_creation'
        end as row_problem
    from typed
    left join leads on typed.lead_id = leads.lead_id

),

ranked as (

    -- clean rows rank first, so a clean row with rank > 1 duplicates a clean winner; the winner
    -- is deterministic: earliest timestamp, then the raw text (identical rows are interchangeable)
    select
        *,
        row_number() over (
            partition by lead_id
            order by row_problem nulls first, converted_at, package_value_raw
        ) as id_rank
    from checked

),

classified as (

    select
        {{ star_except(['row_problem', 'id_rank']) }},
        coalesce(row_problem, case when id_rank > 1 then 'duplicate_id' end) as rejection_reason
    from ranked

),

final as (

    -- the raw text is kept for rejected rows only: accepted rows have their typed values, and
    -- not storing their text a second time halves what this table writes
    select
        {{ raw_text_for_rejected_only(['lead_id_raw', 'converted_at_raw', 'package_value_raw']) }}
    from classified

)

select * from final
