{#- For every activity type: 0 <= n_<type>_<w1>d <= n_<type>_<w2>d <= ... over the vocabulary's
    increasing windows (they are nested, so a violation means the window arithmetic is wrong). -#}
{% test activity_windows_nested(model) %}
    {%- set windows = activity_windows() %}
    select *
    from {{ model }}
    where
    {%- for t in activity_types() %}
        not (0 <= n_{{ t }}_{{ windows[0] }}d
        {%- for w in windows[1:] %} and n_{{ t }}_{{ loop.previtem if loop.previtem is defined else windows[0] }}d <= n_{{ t }}_{{ w }}d{%- endfor %})
        {{- " or" if not loop.last }}
    {%- endfor %}
{% endtest %}
