-- One row per raw lead_attribute_changes.csv row: raw text, typed values and the rejection reason
-- (null when accepted). The file is optional: without it this table is empty (no history).
-- Values stay text (one column holds several fields' values), normalised per field: integers
-- re-printed, enumerations checked against crm_enum. An empty value is a null (a cleared field).
{%- set fields = lead_attribute_fields() %}
{%- set integer_fields = [] %}
{%- for f, sql_type in fields.items() if sql_type == 'integer' %}{% do integer_fields.append(f) %}{% endfor %}
{#- the attributes with an enumeration in crm_enum (industry and country are free text) #}
{%- set enum_fields = ['lead_source', 'license_type', 'budget_band'] %}
with source as (

    {{ raw_lines(
        'lead_attribute_changes', ['lead_id', 'changed_at', 'field', 'old_value', 'new_value']
    ) }}

),

leads as (

    select lead_id, created_at from {{ ref('stg_crm__leads') }}

),

typed as (

    select
        lead_id as lead_id_raw,
        changed_at as changed_at_raw,
        field as field_raw,
        old_value as old_value_raw,
        new_value as new_value_raw,
        line_raw,
        {{ clean_text('lead_id') }} as lead_id,
        lower({{ clean_text('field') }}) as field,
        {{ clean_text('old_value') }} as old_text,
        {{ clean_text('new_value') }} as new_text,
        {{ parse_utc_timestamp('changed_at') }} as changed_at
    from source

),

normalised as (

    -- integer fields re-printed ("014" -> "14"), so equal values compare equal; a non-integer
    -- becomes null here and is told apart from an empty value by the text above
    select
        *,
        case
            when field in {{ sql_list(integer_fields) }}
                then cast({{ try_cast_number('old_text', 'integer') }} as string)
            else old_text
        end as old_value,
        case
            when field in {{ sql_list(integer_fields) }}
                then cast({{ try_cast_number('new_text', 'integer') }} as string)
            else new_text
        end as new_value
    from typed

),

checked as (

    select
        normalised.*,
        case
            when normalised.line_raw is not null then 'malformed_line'
            when normalised.lead_id is null then 'null_id'
            when normalised.changed_at is null then 'unparseable_timestamp'
            when normalised.changed_at > {{ future_cutoff() }} then 'future_timestamp'
            when normalised.field is null or normalised.field not in {{ sql_list(fields) }}
                then 'unknown_field'
            {%- for f in integer_fields %}
            when normalised.field = '{{ f }}'
                and (
                    (normalised.old_text is not null
                        and coalesce({{ try_cast_number('normalised.old_value', 'integer') }} < 0, true))
                    or (normalised.new_text is not null
                        and coalesce({{ try_cast_number('normalised.new_value', 'integer') }} < 0, true))
                )
                then 'invalid_{{ f }}'
            {%- endfor %}
            {%- for f in enum_fields %}
            when normalised.field = '{{ f }}'
                and ({{ is_unknown_enum('normalised.old_value', f) }}
                    or {{ is_unknown_enum('normalised.new_value', f) }})
                then 'unknown_{{ f }}'
            {%- endfor %}
            when leads.lead_id is null then 'unknown_lead'
            when normalised.changed_at < leads.created_at then 'change_before_creation'
        end as row_problem
    from normalised
    left join leads on normalised.lead_id = leads.lead_id

),

ranked as (

    -- one value per lead, field and instant: of several clean rows the first by raw text wins
    -- (identical rows are interchangeable), the others are duplicates
    select
        *,
        row_number() over (
            partition by lead_id, field, changed_at
            order by row_problem nulls first, old_value_raw, new_value_raw
        ) as change_rank
    from checked

),

classified as (

    select
        {{ star_except(['row_problem', 'change_rank', 'old_text', 'new_text']) }},
        coalesce(row_problem, case when change_rank > 1 then 'duplicate_change' end)
            as rejection_reason
    from ranked

),

final as (

    select
        {{ raw_text_for_rejected_only([
            'lead_id_raw', 'changed_at_raw', 'field_raw', 'old_value_raw', 'new_value_raw',
        ]) }}
    from classified

)

select * from final
