{#- The last step of every base_crm__* model: a rejected row keeps its raw text (so the
    *_rejected view shows what arrived), an accepted row keeps only its typed values (so the
    table does not store the text a second time). -#}
{% macro raw_text_for_rejected_only(raw_columns) %}
        * exclude ({{ raw_columns | join(', ') }}),
    {%- for column in raw_columns %}
        case when rejection_reason is not null then {{ column }} end as {{ column }}
        {{- "," if not loop.last }}
    {%- endfor %}
{% endmacro %}
