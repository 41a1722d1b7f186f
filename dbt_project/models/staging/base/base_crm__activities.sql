-- One row per raw activities row (activities.csv and the part files nightly increments append,
-- ml/landing/merge.py): raw text, typed values and the rejection reason (null when accepted). An
-- activity of a lead that is unknown or itself rejected is rejected too. An increment upserts by
-- activity id: of rows sharing an id, those of the latest file win (its row is judged as any
-- other) and the older files' rows are `superseded`.
with source as (

    {{ raw_lines('activities', ['activity_id', 'lead_id', 'occurred_at', 'activity_type']) }}

),

leads as (

    select lead_id from {{ ref('stg_crm__leads') }}

),

typed as (

    select
        activity_id as activity_id_raw,
        lead_id as lead_id_raw,
        occurred_at as occurred_at_raw,
        activity_type as activity_type_raw,
        raw_file as source_file_raw,
        line_raw,
        {{ clean_text('activity_id') }} as activity_id,
        {{ clean_text('lead_id') }} as lead_id,
        {{ fold_enum('activity_type', 'activity_type') }} as activity_type,
        {{ parse_utc_timestamp('occurred_at') }} as occurred_at
    from source

),

checked as (

    select
        typed.*,
        case
            when typed.line_raw is not null then 'malformed_line'
            when typed.activity_id is null or typed.lead_id is null then 'null_id'
            when typed.occurred_at is null then 'unparseable_timestamp'
            when typed.occurred_at > {{ future_cutoff() }} then 'future_timestamp'
            when typed.activity_type is null
                or {{ is_unknown_enum('typed.activity_type', 'activity_type') }}
                then 'unknown_activity_type'
            when leads.lead_id is null then 'unknown_lead'
        end as row_problem
    from typed
    left join leads on typed.lead_id = leads.lead_id

),

ranked as (

    -- the latest file's rows first (an increment replaces what was landed before); of those,
    -- clean rows rank first, so a clean row with rank > 1 duplicates a clean winner; the winner
    -- is deterministic: earliest timestamp, then the raw text (identical rows are interchangeable)
    select
        *,
        row_number() over (
            partition by activity_id
            order by source_file_raw desc, row_problem nulls first, occurred_at, lead_id_raw,
                activity_type_raw
        ) as id_rank,
        max(source_file_raw) over (partition by activity_id) as latest_file
    from checked

),

classified as (

    select
        {{ star_except(['row_problem', 'id_rank', 'latest_file']) }},
        coalesce(
            row_problem,
            case
                when id_rank > 1 and source_file_raw < latest_file then 'superseded'
                when id_rank > 1 then 'duplicate_id'
            end
        ) as rejection_reason
    from ranked

),

final as (

    -- the raw text is kept for rejected rows only: accepted rows have their typed values, and
    -- not storing their text a second time halves what this table writes
    select
        {{ raw_text_for_rejected_only([
            'activity_id_raw', 'lead_id_raw', 'occurred_at_raw', 'activity_type_raw',
            'source_file_raw',
        ]) }}
    from classified

)

select * from final
