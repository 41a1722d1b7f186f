{#- The sales team's hand-weighted engagement rule (also the rules baseline the models must beat).
    Points over the last 30 days: each activity type's engagement_weight in the settings'
    vocabulary (website_visit 1, pricing_page_view 4, email_open 1, email_click 2, form_submit 5,
    webinar 5, call_connected 6, meeting_booked 10, document_upload 8 by default); score = round(100 * (1 - exp(-points / 40)), 1), so 0 points -> 0,
    40 points -> 63.2, and the score approaches 100 without reaching it.
    `column_pattern` names the count columns, '{}' standing for the activity type. -#}

{% macro engagement_weights() %}
    {{ return(vocabulary_var('engagement_weights')) }}
{% endmacro %}

{% macro engagement_points(column_pattern='n_{}_30d') -%}
    ({%- for activity_type, weight in engagement_weights().items() -%}
        {{ weight }} * coalesce({{ column_pattern.replace('{}', activity_type) }}, 0)
        {{- " + " if not loop.last -}}
    {%- endfor -%})
{%- endmacro %}

{% macro engagement_score(column_pattern='n_{}_30d') -%}
    round(100 * (1 - exp(-{{ engagement_points(column_pattern) }} / 40.0)), 1)
{%- endmacro %}
