{#- The lead attributes a change in lead_attribute_changes.csv may touch (docs/contracts.md),
    with the SQL type each has (`string`: DuckDB and Spark both read it) in stg_crm__leads and the marts. ml/contract.py ATTRIBUTE_FIELDS
    lists the same names; tests/data/test_contract.py checks that the two agree. -#}
{% macro lead_attribute_fields() %}
    {{ return({
        "lead_source": "string",
        "industry": "string",
        "company_size": "integer",
        "country": "string",
        "license_type": "string",
        "visa_quota": "integer",
        "budget_band": "string",
    }) }}
{% endmacro %}

{#- A raw file that an export may lack, as a relation: the source when its CSV is in the raw
    folder, else an empty relation with the same (text) columns. While dbt parses (execute is
    false) it always names the source, so lineage shows the file either way. The folder is the
    one the sources' external_location reads (LEAD_SCORING_RAW_DIR). -#}
{% macro optional_source(source_name, table_name, columns) %}
    {%- if execute -%}
        {%- set path = env_var('LEAD_SCORING_RAW_DIR', '../data/raw') ~ '/' ~ table_name ~ '.csv' -%}
        {%- set found = raw_file_count(path) -%}
    {%- else -%}
        {%- set found = 1 -%}
    {%- endif -%}
    {%- if found > 0 -%}
        {{ source(source_name, table_name) }}
    {%- else -%}
        (
            select
            {%- for column in columns %}
                cast(null as string) as {{ column }}{{ "," if not loop.last }}
            {%- endfor %}
            where false
        )
    {%- endif -%}
{% endmacro %}
