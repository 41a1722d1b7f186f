{#- Shared typing of raw text columns: a value that does not parse becomes null, and the caller
    compares with the raw text to tell "missing" from "unparseable". -#}

{#- ISO 8601 text -> timestamp in UTC (naive). An offset such as +02:00 is honoured; text without
    one is UTC (the profile sets TimeZone = UTC). -#}
{% macro parse_utc_timestamp(column) -%}
    timezone('UTC', try_cast(nullif(trim({{ column }}), '') as timestamptz))
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
