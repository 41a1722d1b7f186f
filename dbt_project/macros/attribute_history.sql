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
