{#- Pre-hook of every model (dbt_project.yml). A Spark build killed while it writes a table (the
    dbt process or its JVM dies: out of memory, a kill, a lost machine) leaves the table's
    Parquet folder under spark.warehouse_dir without the metastore entry that `create table ...
    as select` adds after writing; the next build's create then refuses the non-empty folder
    (LOCATION_ALREADY_EXISTS) until someone deletes it by hand. So before a table model is
    created where the metastore holds no table or view of its name, whatever lies at its folder
    belongs to no table and is removed. Spark SQL has no statement that deletes a folder, but
    dropping a database removes the database's folder: the orphan folder is made the location
    of a scratch database that is dropped at once (a folder that was not there is created and
    removed again). A relation the metastore holds is never touched here (dbt-spark drops and
    rebuilds it itself). DuckDB writes one file, transactionally: nothing to do. -#}
{% macro remove_orphan_table_folder() -%}
    {{ return(adapter.dispatch('remove_orphan_table_folder', 'lead_scoring')()) }}
{%- endmacro %}
{% macro default__remove_orphan_table_folder() -%}
{%- endmacro %}
{% macro spark__remove_orphan_table_folder() -%}
    {%- if execute and config.get('materialized') == 'table' -%}
        {#- the metastore itself, not dbt's relation cache -#}
        {%- set owned = run_query(
            'show tables in ' ~ this.schema ~ " like '" ~ this.identifier ~ "'"
        ) | length > 0 -%}
        {%- if not owned -%}
            {%- set schema_location = [] -%}
            {%- for row in run_query('describe database ' ~ this.schema).rows
                    if row[0] == 'Location' -%}
                {%- do schema_location.append(row[1]) -%}
            {%- endfor -%}
            {%- set folder = schema_location[0] ~ '/' ~ this.identifier | lower -%}
            {%- set scratch = this.schema ~ '__orphan__' ~ this.identifier -%}
            {%- do run_query(
                'create database if not exists ' ~ scratch
                ~ " location '" ~ folder | replace("'", "\\'") ~ "'"
            ) -%}
            {%- do run_query('drop database ' ~ scratch ~ ' cascade') -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
