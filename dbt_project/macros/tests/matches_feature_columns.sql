{#- The feature mart's columns, in order and type, are exactly the settings' vocabulary's (var
    feature_columns, from ml.contract.feature_column_types): the contract of a mart whose activity
    count columns are generated from the vocabulary, so they cannot be listed in its yml. One row
    per mismatch. Types are compared dialect-neutrally (varchar/string, integer/int, double). -#}
{% test matches_feature_columns(model) %}
    {%- set expected = vocabulary_var('feature_columns') -%}
    {%- set problems = [] -%}
    {%- if execute -%}
        {%- set actual = [] -%}
        {%- for column in adapter.get_columns_in_relation(model) -%}
            {%- do actual.append((column.name | lower, neutral_type(column.dtype))) -%}
        {%- endfor -%}
        {%- set expected_names = expected.keys() | list -%}
        {%- set actual_names = actual | map(attribute=0) | list -%}
        {%- for name in expected_names if name not in actual_names -%}
            {%- do problems.append("missing column " ~ name) -%}
        {%- endfor -%}
        {%- for name in actual_names if name not in expected_names -%}
            {%- do problems.append("column " ~ name ~ " is not in the vocabulary's feature list") -%}
        {%- endfor -%}
        {%- if not problems and actual_names != expected_names -%}
            {%- do problems.append("columns out of order: expected " ~ expected_names | join(", ")) -%}
        {%- endif -%}
        {%- for name, dtype in actual if name in expected and expected[name] != dtype -%}
            {%- do problems.append(name ~ " is " ~ dtype ~ ", expected " ~ expected[name]) -%}
        {%- endfor -%}
    {%- endif %}
    {%- if problems %}
    {%- for problem in problems %}
    select '{{ problem | replace("'", "''") }}' as problem
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- else %}
    select cast(null as string) as problem where false
    {%- endif %}
{% endtest %}

{#- A column type as string | timestamp | integer | double | bigint | ... (dialect-neutral). -#}
{% macro neutral_type(dtype) %}
    {%- set t = dtype | lower -%}
    {%- if t in ["varchar", "string", "text", "character varying"] or t.startswith("varchar") -%}
        {{ return("string") }}
    {%- elif t in ["integer", "int", "int4", "int32"] -%}
        {{ return("integer") }}
    {%- elif t in ["double", "double precision", "float8", "float64"] -%}
        {{ return("double") }}
    {%- elif t.startswith("timestamp") -%}
        {{ return("timestamp") }}
    {%- endif -%}
    {{ return(t) }}
{% endmacro %}
