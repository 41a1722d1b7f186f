{#- The first step of every base_crm__* model: the raw lines of a source table of `crm` (its
    file and part files, as create_raw_relations declares them), one row per line, with
    `line_raw`, the text of a line the CSV reader could not split into the contract's columns
    (null for a line that parsed), and `raw_file`, the file's name (raw_file_name). The columns
    of a malformed line are null: Spark pads or cuts them to the schema, DuckDB gives none, and
    neither is what the line meant. A table without a file (the optional
    lead_attribute_changes.csv) is an empty relation on both engines. -#}
{% macro raw_lines(table_name, columns) %}
    select
        {%- for column in columns %}
        case when _corrupt_record is null then {{ column }} end as {{ column }},
        {%- endfor %}
        {{ raw_file_name() }} as raw_file,
        _corrupt_record as line_raw
    from {{ source('crm', table_name) }}
{% endmacro %}

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
