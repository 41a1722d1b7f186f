-- One row per lead whose feature rows an incremental build must redo: its fingerprint differs
-- from the one lead_features was last built from, it is new, or it is gone. Before the first
-- build (or with --full-refresh) that is every lead. See macros/incremental.sql.
{%- set built = built_fingerprints() %}
with fingerprints as (

    select lead_id, fingerprint from {{ ref('int_lead_fingerprints') }}

),

{%- if built is not none %}

built as (

    select lead_id, fingerprint from {{ built }}

),

changed as (

    select fingerprints.lead_id
    from fingerprints
    left join built
        on fingerprints.lead_id = built.lead_id
        and fingerprints.fingerprint = built.fingerprint
    where built.lead_id is null
    union all
    select built.lead_id
    from built
    anti join fingerprints on built.lead_id = fingerprints.lead_id

)

{%- else %}

changed as (

    select lead_id from fingerprints

)

{%- endif %}

select lead_id from changed
