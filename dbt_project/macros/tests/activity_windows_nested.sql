{#- For every activity type: 0 <= n_<type>_7d <= n_<type>_30d <= n_<type>_90d (the windows are
    nested, so a violation means the window arithmetic is wrong). -#}
{% test activity_windows_nested(model) %}
    select *
    from {{ model }}
    where
    {%- for t in activity_types() %}
        not (0 <= n_{{ t }}_7d and n_{{ t }}_7d <= n_{{ t }}_30d and n_{{ t }}_30d <= n_{{ t }}_90d)
        {{- " or" if not loop.last }}
    {%- endfor %}
{% endtest %}
