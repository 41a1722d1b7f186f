{#- The enumerations of the raw contract (docs/contracts.md): the one place they are listed.
    Staging rejects a value outside them; the `in_crm_enum` test checks the marts against them. -#}
{% macro crm_enum(name) %}
    {%- set enums = {
        "lead_source": ["Web", "Referral", "Partner agent", "Event", "Social", "Email campaign",
                        "Walk-in", "Call centre"],
        "license_type": ["Commercial", "Industrial", "Service", "Media", "Educational", "Freelance"],
        "budget_band": ["<25k", "25k-50k", "50k-100k", "100k+"],
        "activity_type": activity_types(),
    } -%}
    {%- if name not in enums -%}
        {{ exceptions.raise_compiler_error("crm_enum: unknown enumeration '" ~ name ~ "'") }}
    {%- endif -%}
    {{ return(enums[name]) }}
{% endmacro %}

{#- The nine activity types, in the order of the feature columns. -#}
{% macro activity_types() %}
    {{ return(["website_visit", "pricing_page_view", "email_open", "email_click", "form_submit",
               "webinar", "call_connected", "meeting_booked", "document_upload"]) }}
{% endmacro %}

{#- A SQL list literal ('a', 'b', ...) of an enumeration, for `x in {{ sql_list(...) }}`. -#}
{% macro sql_list(values) -%}
    ({%- for v in values -%}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%})
{%- endmacro %}
