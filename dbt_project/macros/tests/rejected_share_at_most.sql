{#- Data-quality gate on the quarantine: a few bad rows are normal in a CRM export, a large
    share means the export itself is broken (wrong format, truncated file, changed columns).
    Fails with one row when rejected / (accepted + rejected) exceeds `max_share` (default the
    var `max_rejected_share`), which stops everything downstream of staging. A row `superseded` by
    a later landing of its id (a nightly increment's upsert) is no fault of the export and is
    left out of both counts. -#}
{% test rejected_share_at_most(model, accepted, max_share=none) %}
    {%- set limit = max_share if max_share is not none else var('max_rejected_share', 0.05) %}
    with rejected_rows as (
        select count(*) as n from {{ model }}
        where rejection_reason is null or rejection_reason != 'superseded'
    ),

    accepted_rows as (
        select count(*) as n from {{ accepted }}
    )

    select
        rejected_rows.n as n_rejected,
        accepted_rows.n as n_accepted,
        {{ limit }} as max_share
    from rejected_rows, accepted_rows
    where rejected_rows.n > {{ limit }} * (rejected_rows.n + accepted_rows.n)
{% endtest %}
