{#- Nightly increments. The models that grow with history (int_activities_accumulated,
    lead_features) rebuild only the leads whose inputs changed since their last successful build,
    plus the snapshots they do not hold yet. A lead's inputs are fingerprinted by
    int_lead_fingerprints; int_leads_changed compares them with the fingerprints stored when
    lead_features last built (lead_fingerprints_built, written by its post-hook, so a failed build
    leaves them as they were and the next build redoes those leads). A change of the settings
    that shape features (vocabulary, snapshot interval, lead age, the as-of time of day) changes
    every fingerprint: everything is rebuilt. `dbt build --full-refresh` rebuilds all.

    On Spark (engine: spark) every build is a full rebuild: dbt-spark's tables are Parquet, and a
    Parquet table takes no DELETE, which is how an increment drops a changed lead's stale rows
    (delete_changed_leads). A Delta or Iceberg table would (a cluster's choice, not a local one).
    So there the growing models are plain tables (incremental_materialization), no fingerprints
    are stored (store_built_fingerprints), int_leads_changed is every lead and
    int_feature_rows_to_build every open-lead row: the same rows a DuckDB full build computes,
    which is what the parity test compares. -#}

{#- The materialization of a model that grows with history: incremental where the warehouse can
    delete rows (DuckDB), a table rebuilt whole on Spark (see above). -#}
{% macro incremental_materialization() %}
    {{ return(adapter.dispatch('incremental_materialization', 'lead_scoring')()) }}
{% endmacro %}
{% macro default__incremental_materialization() %}
    {{ return('incremental') }}
{% endmacro %}
{% macro spark__incremental_materialization() %}
    {{ return('table') }}
{% endmacro %}

{#- What every fingerprint includes: the vars that shape a lead's rows. -#}
{% macro build_signature() %}
    {%- set as_of = var('as_of', none) -%}
    {{ return(tojson([
        var('snapshot_interval_days'), var('max_lead_age_days'), activity_types(),
        activity_windows(), engagement_weights(), vocabulary_var('crm_enums'),
        (as_of | string)[11:] if as_of else '00:00:00',
    ])) }}
{% endmacro %}

{#- The table of fingerprints lead_features was last built from (none before the first build). -#}
{% macro built_fingerprints() %}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema,
                                   identifier='lead_fingerprints_built')) }}
{% endmacro %}

{#- Post-hook of lead_features: remember the fingerprints it was built from (nothing on Spark,
    where every build is a full one, so built_fingerprints stays none there). -#}
{% macro store_built_fingerprints() %}
    {{ return(adapter.dispatch('store_built_fingerprints', 'lead_scoring')()) }}
{% endmacro %}
{% macro spark__store_built_fingerprints() %}
    select 1
{% endmacro %}
{% macro default__store_built_fingerprints() %}
    create or replace table {{ this.schema }}.lead_fingerprints_built as
    select lead_id, fingerprint from {{ ref('int_lead_fingerprints') }}
{% endmacro %}

{#- Pre-hook of an incremental model: drop the rows of changed leads (they are rebuilt whole, so
    a lead whose rows shrink, e.g. a late conversion, loses the stale ones). -#}
{% macro delete_changed_leads(key_column, key_expression='lead_id') %}
    {%- if is_incremental() %}
    delete from {{ this }}
    where {{ key_column }} in (
        select {{ key_expression }} from {{ ref('int_leads_changed') }}
    )
    {%- else %}
    select 1
    {%- endif %}
{% endmacro %}

{#- Pre-hook of lead_features: drop rows of snapshots no longer scheduled (yesterday's as-of). -#}
{% macro delete_unscheduled_snapshots() %}
    {%- if is_incremental() %}
    delete from {{ this }}
    where snapshot_ts not in (select snapshot_ts from {{ ref('int_snapshots_scheduled') }})
    {%- else %}
    select 1
    {%- endif %}
{% endmacro %}
