{#- Shared typing of raw text columns: a value that does not parse becomes null, and the caller
    compares with the raw text to tell "missing" from "unparseable". -#}

{#- Timestamp text -> timestamp in UTC (naive). ISO 8601 first: an offset such as +02:00 is
    honoured, text without one is UTC (the profile sets TimeZone = UTC). Text that is not ISO is
    tried with the formats of the var `raw_timestamp_formats` (default: the US-style
    `05/06/2026 14:22` a spreadsheet export writes, read as UTC). `lead-scoring land` converts an
    export's formats and zones by its mapping; this is the second line for files dropped straight
    into the raw folder. -#}
{% macro parse_utc_timestamp(column) -%}
    coalesce(
        {{ try_parse_iso_timestamp('trim(' ~ column ~ ')') }},
        {{ try_parse_timestamp_formats('trim(' ~ column ~ ')', raw_timestamp_formats()) }}
    )
{%- endmacro %}

{% macro raw_timestamp_formats() -%}
    {{ return(var('raw_timestamp_formats', [
        '%m/%d/%Y %H:%M', '%m/%d/%Y %H:%M:%S', '%m/%d/%Y %I:%M %p', '%Y/%m/%d %H:%M:%S',
    ])) }}
{%- endmacro %}

{#- An enumeration's value folded to its contract spelling: case and runs of whitespace do not
    matter (' web ' -> 'Web', 'EMAIL_OPEN' -> 'email_open'); a value outside the enumeration is
    returned trimmed, for is_unknown_enum to catch. -#}
{% macro fold_enum(column, enum_name) -%}
    case lower({{ collapse_whitespace('trim(' ~ column ~ ')') }})
        {%- for v in crm_enum(enum_name) %}
        when '{{ v | lower | replace("'", "''") }}' then '{{ v | replace("'", "''") }}'
        {%- endfor %}
        else {{ clean_text(column) }}
    end
{%- endmacro %}

{#- A count or amount as text -> number: thousands separators (`1,200`, `12,000.50`) are dropped
    first; anything else that does not cast is null. -#}
{% macro parse_number(column, type='integer') -%}
    {%- set text = 'trim(' ~ column ~ ')' -%}
    {%- set without_separators -%}
        case
            when {{ regex_full_match(text, '[+]?\\d{1,3}(,\\d{3})+(\\.\\d+)?') }}
                then replace({{ text }}, ',', '')
            else {{ text }}
        end
    {%- endset -%}
    {{ try_cast_number(without_separators, type) }}
{%- endmacro %}

{#- Trimmed text, empty -> null. -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#- True when a non-empty raw value fails to parse as a number >= 0. -#}
{% macro is_invalid_non_negative(raw_column, typed_column) -%}
    ({{ clean_text(raw_column) }} is not null and coalesce({{ typed_column }} < 0, true))
{%- endmacro %}

{#- True when a non-empty value is outside an enumeration of crm_enum(). -#}
{% macro is_unknown_enum(column, enum_name) -%}
    ({{ column }} is not null and {{ column }} not in {{ sql_list(crm_enum(enum_name)) }})
{%- endmacro %}
