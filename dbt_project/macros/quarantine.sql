{#- The last step of every base_crm__* model: a rejected row keeps its raw text (so the
    *_rejected view shows what arrived), an accepted row keeps only its typed values (so the
    table does not store the text a second time). -#}
{#- `issue_columns` (raw column -> issue column) also keeps the raw text of an accepted row's
    column whose value was dropped as an attribute issue, for stg_crm__lead_attribute_issues. -#}
{% macro raw_text_for_rejected_only(raw_columns, issue_columns={}) %}
        {{ star_except(raw_columns) }},
    {%- for column in raw_columns %}
        case
            when rejection_reason is not null
            {%- if column in issue_columns %} or {{ issue_columns[column] }} is not null{% endif %}
                then {{ column }}
        end as {{ column }}
        {{- "," if not loop.last }}
    {%- endfor %}
{% endmacro %}
