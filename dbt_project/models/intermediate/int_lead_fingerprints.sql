-- One row per lead (accepted or previously built): a fingerprint of every input its feature rows
-- depend on — its lead row, conversion, attribute changes and activities — and of the vars that
-- shape them (macros/incremental.sql). Two builds with equal fingerprints give the lead equal
-- rows, so an incremental build may keep them.
with leads as (

    select
        lead_id,
        {{ row_hash([
            'created_at', 'lead_source', 'industry', 'country', 'license_type', 'budget_band',
            'company_size', 'visa_quota',
        ]) }} as lead_hash
    from {{ ref('stg_crm__leads') }}

),

activities as (

    select
        lead_id,
        count(*) as n_activities,
        {{ hash_sum(row_hash(['activity_id', 'occurred_at', 'activity_type'])) }} as activity_hash
    from {{ ref('stg_crm__activities') }}
    group by lead_id

),

conversions as (

    select lead_id, {{ row_hash(['converted_at', 'package_value']) }} as conversion_hash
    from {{ ref('stg_crm__conversions') }}

),

changes as (

    select
        lead_id,
        {{ hash_sum(row_hash(['changed_at', 'field', 'old_value', 'new_value'])) }} as change_hash
    from {{ ref('stg_crm__lead_attribute_changes') }}
    group by lead_id

),

final as (

    select
        leads.lead_id,
        {{ row_hash([
            'leads.lead_hash',
            'coalesce(activities.n_activities, 0)',
            'coalesce(activities.activity_hash, 0)',
            'conversions.conversion_hash',
            'coalesce(changes.change_hash, 0)',
            "'" ~ build_signature() | replace("'", "''") ~ "'",
        ]) }} as fingerprint
    from leads
    left join activities on leads.lead_id = activities.lead_id
    left join conversions on leads.lead_id = conversions.lead_id
    left join changes on leads.lead_id = changes.lead_id

)

select * from final
