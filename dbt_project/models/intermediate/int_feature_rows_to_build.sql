-- One row per (lead, snapshot) of lead_features that this build computes: every open-lead row
-- on a full build; on a nightly increment (lead_features and the fingerprints it was built from
-- exist, no --full-refresh) only the rows of leads whose inputs changed and the rows at snapshots
-- lead_features does not hold yet (tonight's as-of). int_activities_windowed starts from these
-- rows, so the window joins run only over them. See macros/incremental.sql.
{%- set features = adapter.get_relation(database=this.database, schema=this.schema,
                                        identifier='lead_features') if execute else none %}
{%- set incremental = features is not none and built_fingerprints() is not none %}
-- depends_on: {{ ref('int_leads_changed') }}
with open_rows as (

    select lead_id, snapshot_ts, created_at from {{ ref('int_leads_snapshotted') }}

)

select * from open_rows
{%- if incremental %}
where lead_id in (select lead_id from {{ ref('int_leads_changed') }})
    or snapshot_ts not in (select distinct snapshot_ts from {{ features }})
{%- endif %}
