-- One row per open lead per snapshot (the rows of int_leads_snapshotted): the lead's attributes
-- as they stood at snapshot_ts. leads.csv holds the current values; the change history
-- (stg_crm__lead_attribute_changes) rebuilds the past. For each field:
--   the new_value of the last change at or before snapshot_ts, if there is one;
--   else the old_value of the field's first change (the value before any recorded change);
--   else, for a field never changed, the current value of leads.csv.
-- A change stamped exactly at snapshot_ts counts, as an activity does ((t - w, t] windows).
{%- set fields = lead_attribute_fields() %}
with lead_snapshots as (

    select lead_id, snapshot_ts from {{ ref('int_leads_snapshotted') }}

),

leads as (

    select lead_id, {{ fields | join(', ') }} from {{ ref('stg_crm__leads') }}

),

changes as (

    select lead_id, field, changed_at, old_value, new_value
    from {{ ref('stg_crm__lead_attribute_changes') }}

),

values_before_history as (

    -- one row per lead and changed field: the value before its first change (_null: a cleared
    -- value is a value, not "no row")
    select lead_id, field, {{ arg_min_null('old_value', 'changed_at') }} as value
    from changes
    group by lead_id, field

),

values_at_snapshot as (

    -- one row per lead, snapshot and field changed at or before the snapshot: the last new value
    select
        lead_snapshots.lead_id,
        lead_snapshots.snapshot_ts,
        changes.field,
        {{ arg_max_null('changes.new_value', 'changes.changed_at') }} as value
    from lead_snapshots
    inner join changes
        on lead_snapshots.lead_id = changes.lead_id
        and changes.changed_at <= lead_snapshots.snapshot_ts
    group by lead_snapshots.lead_id, lead_snapshots.snapshot_ts, changes.field

),

{%- for name, keys in [('snapshot_pivot', 'lead_id, snapshot_ts'), ('initial_pivot', 'lead_id')] %}

{{ name }} as (

    -- one row per {{ keys | replace(', ', ' and ') }}: each field's value and whether it is known
    select
        {{ keys }},
        {%- for f in fields %}
        bool_or(field = '{{ f }}') as has_{{ f }},
        max(value) filter (where field = '{{ f }}') as {{ f }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ 'values_at_snapshot' if name == 'snapshot_pivot' else 'values_before_history' }}
    group by {{ keys }}

),
{%- endfor %}

final as (

    select
        cast(lead_snapshots.lead_id as string) as lead_id,
        cast(lead_snapshots.snapshot_ts as timestamp) as snapshot_ts,
        {%- for f, sql_type in fields.items() %}
        cast(
            case
                when snapshot_pivot.has_{{ f }} then snapshot_pivot.{{ f }}
                when initial_pivot.has_{{ f }} then initial_pivot.{{ f }}
                else cast(leads.{{ f }} as string)
            end as {{ sql_type }}
        ) as {{ f }}{{ "," if not loop.last }}
        {%- endfor %}
    from lead_snapshots
    inner join leads on lead_snapshots.lead_id = leads.lead_id
    left join snapshot_pivot
        on lead_snapshots.lead_id = snapshot_pivot.lead_id
        and lead_snapshots.snapshot_ts = snapshot_pivot.snapshot_ts
    left join initial_pivot on lead_snapshots.lead_id = initial_pivot.lead_id

)

select * from final
