{#- accepted_values against an enumeration of crm_enum(), so the list lives in one place. -#}
{% test in_crm_enum(model, column_name, enum) %}
    select {{ column_name }}, count(*) as n_rows
    from {{ model }}
    where {{ is_unknown_enum(column_name, enum) }}
    group by {{ column_name }}
{% endtest %}
