{#- The build's point in time. `--vars '{as_of: 2026-11-01T00:00:00}'` pins it (UTC); without it,
    the rejection cutoff is the clock and the snapshot spine ends at midnight after the latest
    accepted timestamp (see int_snapshots_scheduled). -#}

{#- The as_of var as a timestamp literal, or null when not given. -#}
{% macro as_of_literal() -%}
    {%- if var('as_of', none) -%}
        {{ parse_utc_timestamp("'" ~ var('as_of') ~ "'") }}
    {%- else -%}
        cast(null as timestamp)
    {%- endif -%}
{%- endmacro %}

{#- Rows stamped after this are rejected as "future_timestamp". -#}
{% macro future_cutoff() -%}
    coalesce({{ as_of_literal() }}, {{ utc_now() }})
{%- endmacro %}
