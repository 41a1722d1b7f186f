{#- Row conservation of the quarantine: every raw row is either accepted or rejected, never both,
    never lost. Fails with one row when count(raw) != count(accepted) + count(rejected). -#}
{% test rows_add_up(model, accepted, rejected) %}
    with raw_rows as (
        select count(*) as n from {{ model }}
    ),

    accepted_rows as (
        select count(*) as n from {{ accepted }}
    ),

    rejected_rows as (
        select count(*) as n from {{ rejected }}
    )

    select
        raw_rows.n as n_raw,
        accepted_rows.n as n_accepted,
        rejected_rows.n as n_rejected
    from raw_rows, accepted_rows, rejected_rows
    where raw_rows.n != accepted_rows.n + rejected_rows.n
{% endtest %}
