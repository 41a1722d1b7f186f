{#- The vocabulary comes from the settings (config/training_config.yaml, `vocabulary`), passed as
    vars by ml.warehouse.dbt_vars: it is listed once, there. Staging rejects a value outside an
    enumeration; the `in_crm_enum` test checks the marts against them. -#}
{% macro vocabulary_var(name) %}
    {%- set value = var(name, none) -%}
    {%- if value is none -%}
        {{ exceptions.raise_compiler_error(
            "dbt var '" ~ name ~ "' is missing: it is the settings' vocabulary; run dbt through "
            ~ "`lead-scoring build` (or pass --vars from ml.warehouse.dbt_vars)") }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}

{% macro crm_enum(name) %}
    {%- set enums = dict(vocabulary_var('crm_enums')) -%}
    {%- do enums.update({"activity_type": activity_types()}) -%}
    {%- if name not in enums -%}
        {{ exceptions.raise_compiler_error("crm_enum: unknown enumeration '" ~ name ~ "'") }}
    {%- endif -%}
    {{ return(enums[name]) }}
{% endmacro %}

{#- The activity types of the vocabulary, in the order of the feature columns. -#}
{% macro activity_types() %}
    {{ return(vocabulary_var('activity_types')) }}
{% endmacro %}

{#- The windows (days) each activity type is counted over. -#}
{% macro activity_windows() %}
    {{ return(vocabulary_var('activity_windows_days')) }}
{% endmacro %}

{#- A SQL list literal ('a', 'b', ...) of an enumeration, for `x in {{ sql_list(...) }}`. -#}
{% macro sql_list(values) -%}
    ({%- for v in values -%}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%})
{%- endmacro %}
