{#- The model has exactly as many rows as `compare_model` (one row per row of it, e.g. a model
    that adds columns to another's grain). Fails with one row holding both counts. -#}
{% test row_count_equals(model, compare_model) %}
    with model_rows as (
        select count(*) as n from {{ model }}
    ),

    compare_rows as (
        select count(*) as n from {{ compare_model }}
    )

    select model_rows.n as n_model, compare_rows.n as n_compare
    from model_rows, compare_rows
    where model_rows.n != compare_rows.n
{% endtest %}
