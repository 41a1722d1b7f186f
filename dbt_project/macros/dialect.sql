{#- Where DuckDB and Spark SQL differ. Each macro dispatches on the adapter
    (`adapter.dispatch`): `default__` is the DuckDB spelling (the engine the project was written
    for), `spark__` the Spark SQL one, so each model stays one file for both engines. Only what
    differs lives here; the rest of the SQL is common to both. tests/dbt/test_spark_parity.py
    builds the same raw files on both engines and compares every mart and rejected row. -#}

{#- A whole number of days as an interval, e.g. from a var. -#}
{% macro days(n) -%}
    {{ return(adapter.dispatch('days', 'lead_scoring')(n)) }}
{%- endmacro %}
{% macro default__days(n) -%}
    to_days(cast({{ n }} as integer))
{%- endmacro %}
{% macro spark__days(n) -%}
    make_dt_interval(cast({{ n }} as integer))
{%- endmacro %}

{#- The clock as a naive UTC timestamp (the Spark session's time zone is UTC, see profiles.yml). -#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'lead_scoring')()) }}
{%- endmacro %}
{% macro default__utc_now() -%}
    timezone('UTC', now())
{%- endmacro %}
{% macro spark__utc_now() -%}
    current_timestamp()
{%- endmacro %}

{#- Seconds since 1970-01-01 as a double (fractional seconds kept). -#}
{% macro epoch_seconds(ts) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'lead_scoring')(ts)) }}
{%- endmacro %}
{% macro default__epoch_seconds(ts) -%}
    epoch({{ ts }})
{%- endmacro %}
{% macro spark__epoch_seconds(ts) -%}
    (cast(unix_micros({{ ts }}) as double) / 1000000.0D)
{%- endmacro %}

{#- A 64-bit integer key of a text id (grouping and joining on it is faster than on text);
    a singular test fails the build on a collision. -#}
{% macro key_hash(column) -%}
    {{ return(adapter.dispatch('key_hash', 'lead_scoring')(column)) }}
{%- endmacro %}
{% macro default__key_hash(column) -%}
    hash({{ column }})
{%- endmacro %}
{% macro spark__key_hash(column) -%}
    xxhash64({{ column }})
{%- endmacro %}

{#- A 64-bit hash of several values (a fingerprint: equal values, equal hash). A null is
    distinct from every value and from a null in another position: Spark's xxhash64 skips null
    arguments, so (x, null) and (null, x) would hash alike; their null flags are hashed too. -#}
{% macro row_hash(values) -%}
    {{ return(adapter.dispatch('row_hash', 'lead_scoring')(values)) }}
{%- endmacro %}
{% macro default__row_hash(values) -%}
    hash({{ values | join(', ') }})
{%- endmacro %}
{% macro spark__row_hash(values) -%}
    xxhash64(
        {%- for v in values %}{{ v }}, {% endfor -%}
        {%- for v in values %}isnull({{ v }}){{ ", " if not loop.last }}{% endfor -%}
    )
{%- endmacro %}

{#- The sum of 64-bit hashes over a group (an order-free fingerprint of a set of rows), in a
    type wide enough never to overflow. -#}
{% macro hash_sum(value) -%}
    {{ return(adapter.dispatch('hash_sum', 'lead_scoring')(value)) }}
{%- endmacro %}
{% macro default__hash_sum(value) -%}
    sum({{ value }}::hugeint)
{%- endmacro %}
{% macro spark__hash_sum(value) -%}
    sum(cast({{ value }} as decimal(38, 0)))
{%- endmacro %}

{#- `select <relation>.* except these columns`. -#}
{% macro star_except(columns, relation=none) -%}
    {{ return(adapter.dispatch('star_except', 'lead_scoring')(columns, relation)) }}
{%- endmacro %}
{% macro default__star_except(columns, relation) -%}
    {{ relation ~ '.' if relation }}* exclude ({{ columns | join(', ') }})
{%- endmacro %}
{% macro spark__star_except(columns, relation) -%}
    {{ relation ~ '.' if relation }}* except ({{ columns | join(', ') }})
{%- endmacro %}

{#- The value at the smallest / largest `ordering`, null values included (a cleared attribute is
    a value). -#}
{% macro arg_min_null(value, ordering) -%}
    {{ return(adapter.dispatch('arg_min_null', 'lead_scoring')(value, ordering)) }}
{%- endmacro %}
{% macro default__arg_min_null(value, ordering) -%}
    arg_min_null({{ value }}, {{ ordering }})
{%- endmacro %}
{% macro spark__arg_min_null(value, ordering) -%}
    {#- Spark's min_by keeps a null value (it does not skip it like DuckDB's arg_min) -#}
    min_by({{ value }}, {{ ordering }})
{%- endmacro %}
{% macro arg_max_null(value, ordering) -%}
    {{ return(adapter.dispatch('arg_max_null', 'lead_scoring')(value, ordering)) }}
{%- endmacro %}
{% macro default__arg_max_null(value, ordering) -%}
    arg_max_null({{ value }}, {{ ordering }})
{%- endmacro %}
{% macro spark__arg_max_null(value, ordering) -%}
    max_by({{ value }}, {{ ordering }})
{%- endmacro %}

{#- One row per timestamp from `start` to `stop` by `step` (a set-returning select item). -#}
{% macro timestamp_series(start, stop, step) -%}
    {{ return(adapter.dispatch('timestamp_series', 'lead_scoring')(start, stop, step)) }}
{%- endmacro %}
{% macro default__timestamp_series(start, stop, step) -%}
    unnest(generate_series({{ start }}, {{ stop }}, {{ step }}))
{%- endmacro %}
{% macro spark__timestamp_series(start, stop, step) -%}
    explode(sequence({{ start }}, {{ stop }}, {{ step }}))
{%- endmacro %}

{#- Runs of whitespace -> one space. -#}
{% macro collapse_whitespace(expr) -%}
    {{ return(adapter.dispatch('collapse_whitespace', 'lead_scoring')(expr)) }}
{%- endmacro %}
{% macro default__collapse_whitespace(expr) -%}
    regexp_replace({{ expr }}, '\s+', ' ', 'g')
{%- endmacro %}
{% macro spark__collapse_whitespace(expr) -%}
    {#- Spark string literals take backslash escapes: '\\s' is the regex \s -#}
    regexp_replace({{ expr }}, '\\s+', ' ')
{%- endmacro %}

{#- True when the whole of `expr` matches the regular expression `pattern`. -#}
{% macro regex_full_match(expr, pattern) -%}
    {{ return(adapter.dispatch('regex_full_match', 'lead_scoring')(expr, pattern)) }}
{%- endmacro %}
{% macro default__regex_full_match(expr, pattern) -%}
    regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}
{% macro spark__regex_full_match(expr, pattern) -%}
    ({{ expr }} rlike '^(?:{{ pattern | replace("\\", "\\\\") }})$')
{%- endmacro %}

{#- Text -> number, null when it does not parse. DuckDB's cast rounds a decimal text to an
    integer ('12.5' -> 13) and reads exponents ('1e3'); Spark's try_cast to int refuses both, so
    the Spark spelling goes through a decimal and rounds half away from zero, as DuckDB does. -#}
{% macro try_cast_number(expr, type) -%}
    {{ return(adapter.dispatch('try_cast_number', 'lead_scoring')(expr, type)) }}
{%- endmacro %}
{% macro default__try_cast_number(expr, type) -%}
    try_cast({{ expr }} as {{ type }})
{%- endmacro %}
{% macro spark__try_cast_number(expr, type) -%}
    {%- if type | lower in ('integer', 'int', 'bigint') -%}
        try_cast(round(try_cast({{ expr }} as decimal(38, 9)), 0) as {{ type }})
    {%- else -%}
        try_cast({{ expr }} as {{ type }})
    {%- endif -%}
{%- endmacro %}

{#- ISO 8601 text -> naive UTC timestamp (an offset is honoured, none means UTC), null when it
    does not parse. -#}
{% macro try_parse_iso_timestamp(expr) -%}
    {{ return(adapter.dispatch('try_parse_iso_timestamp', 'lead_scoring')(expr)) }}
{%- endmacro %}
{% macro default__try_parse_iso_timestamp(expr) -%}
    timezone('UTC', try_cast(nullif({{ expr }}, '') as timestamptz))
{%- endmacro %}
{% macro spark__try_parse_iso_timestamp(expr) -%}
    {#- Spark also casts '2026' or '2026-05' to a timestamp; DuckDB wants a whole date first -#}
    case
        when {{ expr }} rlike '^[0-9]{4}-[0-9]{2}-[0-9]{2}'
            then try_cast({{ expr }} as timestamp)
    end
{%- endmacro %}

{#- Text -> timestamp by the first of `formats` (strftime spelling, as DuckDB's strptime takes
    them) that parses it, else null. -#}
{% macro try_parse_timestamp_formats(expr, formats) -%}
    {{ return(adapter.dispatch('try_parse_timestamp_formats', 'lead_scoring')(expr, formats)) }}
{%- endmacro %}
{% macro default__try_parse_timestamp_formats(expr, formats) -%}
    try_strptime({{ expr }}, [
        {%- for f in formats -%}'{{ f }}'{{ ", " if not loop.last }}{%- endfor -%}
    ])
{%- endmacro %}
{% macro spark__try_parse_timestamp_formats(expr, formats) -%}
    coalesce(
        {%- for f in formats %}
        try_to_timestamp({{ expr }}, '{{ java_datetime_pattern(f) }}'){{ "," if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}

{#- A strftime format as a Java DateTimeFormatter pattern (Spark's to_timestamp). Single letters
    read one or two digits, as strptime's %m, %d, %H do. -#}
{% macro java_datetime_pattern(format) -%}
    {%- set tokens = {
        '%Y': 'yyyy', '%m': 'M', '%d': 'd', '%H': 'H', '%I': 'h', '%M': 'mm', '%S': 'ss',
        '%p': 'a', '%y': 'yy', '%b': 'MMM', '%B': 'MMMM', '%f': 'SSSSSS',
    } -%}
    {%- set ns = namespace(out=format) -%}
    {%- for token, pattern in tokens.items() -%}
        {%- set ns.out = ns.out.replace(token, pattern) -%}
    {%- endfor -%}
    {%- if '%' in ns.out -%}
        {{ exceptions.raise_compiler_error(
            "raw_timestamp_formats: no Spark pattern for '" ~ format ~ "' (supported: "
            ~ tokens.keys() | join(', ') ~ ")"
        ) }}
    {%- endif -%}
    {{ ns.out }}
{%- endmacro %}

{#- `left asof join`s of one relation, one per lookup: for each row of `left_relation` and each
    lookup `[alias, at]`, the row of `relation` with the same key and the largest `right_ts` <=
    `at` (null when there is none), read in the select list as `alias.column`. Every `at` is an
    expression over the left relation's columns.
    DuckDB has the ASOF join natively: one `asof left join` per lookup.
    Spark SQL has none. Each lookup as a join of its own (a union of the right rows with the
    query points, a window per key, a join back) sorted the right relation once per lookup:
    int_activities_windowed's four lookups cost lead_features 86 CPU s at 100k leads. Here all
    lookups share one pass: the right rows and every query point (each left row's `at`s, tagged
    with their lookup) are unioned per key and ordered by time, right rows first on a tie so "<="
    holds; each point takes the last right row seen, as a struct (`last(..., true)` skips the
    points); the points are folded back to one row per left row, one struct column per lookup
    alias, and joined to the left relation once (56 CPU s, the same rows). `alias.column` then
    reads a field of that struct, so an alias must not be the name of a left column. -#}
{% macro asof_left_joins(relation, right_key, right_ts, left_relation, left_key, lookups) -%}
    {{ return(adapter.dispatch('asof_left_joins', 'lead_scoring')(
        relation, right_key, right_ts, left_relation, left_key, lookups)) }}
{%- endmacro %}
{% macro default__asof_left_joins(relation, right_key, right_ts, left_relation, left_key, lookups) -%}
    {%- for alias, at in lookups %}
    asof left join {{ relation }} as {{ alias }}
        on {{ left_key }} = {{ alias }}.{{ right_key }}
        and {{ alias }}.{{ right_ts }} <= {{ at }}
    {%- endfor %}
{%- endmacro %}
{% macro spark__asof_left_joins(relation, right_key, right_ts, left_relation, left_key, lookups) -%}
    {%- set ats %}{% for _ in lookups %}_asof_at_{{ loop.index0 }}{{ ", " if not loop.last }}{% endfor %}{% endset %}
    left join (
        select
            _asof_key,
            {{ ats }},
            {%- for alias, _ in lookups %}
            first(case when _asof_lookup = {{ loop.index0 }} then _asof_row end, true)
                as {{ alias }}{{ "," if not loop.last }}
            {%- endfor %}
        from (
            select
                _asof_key,
                {{ ats }},
                _asof_lookup,
                _asof_is_point,
                last(_asof_row, true) over (
                    partition by _asof_key
                    order by _asof_at, _asof_is_point
                    rows between unbounded preceding and current row
                ) as _asof_row
            from (
                select
                    {{ right_key }} as _asof_key,
                    {{ right_ts }} as _asof_at,
                    0 as _asof_is_point,
                    {%- for _ in lookups %}
                    null as _asof_at_{{ loop.index0 }},
                    {%- endfor %}
                    null as _asof_lookup,
                    struct(*) as _asof_row
                from {{ relation }}
                union all
                select _asof_key, _asof_at, 1, {{ ats }}, _asof_lookup, null
                from (
                    select distinct
                        {{ left_key }} as _asof_key,
                        {%- for _, at in lookups %}
                        {{ at }} as _asof_at_{{ loop.index0 }}{{ "," if not loop.last }}
                        {%- endfor %}
                    from {{ left_relation }}
                ) as asof_left
                lateral view posexplode(array({{ ats }})) asof_lookups as _asof_lookup, _asof_at
            ) as asof_union
        ) as asof_points
        where _asof_is_point = 1
        group by _asof_key, {{ ats }}
    ) as asof_found
        on {{ left_key }} = asof_found._asof_key
        {%- for _, at in lookups %}
        and {{ at }} = asof_found._asof_at_{{ loop.index0 }}
        {%- endfor %}
{%- endmacro %}

{#- The raw CSVs as relations, one per source table of `crm`, declared by this on-run-start hook
    (dbt_project.yml) with the same columns on both engines: the contract's columns as text (as
    the raw files hold them), and `_corrupt_record`, the text of a malformed line (a wrong number
    of fields, a quote left open), null for a line that parsed. A malformed line is one row with
    every contract column null, so staging quarantines it (`malformed_line`) instead of failing
    the build, and accepted + rejected = raw lines still holds. A table is its file
    `<name>.csv` plus the part files of nightly increments (`<name>.*csv`); a table without any
    file (the optional lead_attribute_changes) is empty. A file whose first line is not the
    contract's header (its columns in the contract's order) fails the build, naming the file. -#}
{% macro create_raw_relations() -%}
    {{ return(adapter.dispatch('create_raw_relations', 'lead_scoring')()) }}
{%- endmacro %}
{#- DuckDB: a view per table over read_csv, which skips the lines it cannot parse
    (ignore_errors), plus those lines from `<name>_malformed_lines`, a small table this hook
    fills from a first scan with store_rejects (its rejects table is a temporary table of this
    connection, and the models run on others). The first scan also finds each file's header:
    the files are read with header false, so the header can be checked (the reader takes the
    columns by position) and the view drops it. A line of too many fields is recorded once per
    extra field, hence the distinct. The reader stays strict: lenient (strict_mode false) reads a
    line of too many fields as a good one, cut. Strict, a file mixing line ends (a CRLF line in
    an LF file) stops the read, naming the file (Spark reads it). Scanning is cheap next to
    writing: the raw text is not copied into the warehouse. -#}
{% macro default__create_raw_relations() -%}
    {%- if execute -%}
        {%- set raw_dir = env_var('LEAD_SCORING_RAW_DIR', '../data/raw') -%}
        {%- for node in graph.sources.values() if node.source_name == 'crm' -%}
            {%- if loop.first -%}
                {%- do run_query('create schema if not exists ' ~ node.schema) -%}
            {%- endif -%}
            {%- set relation = node.schema ~ '.' ~ node.name -%}
            {%- set malformed = relation ~ '_malformed_lines' -%}
            {%- set columns = node.columns.keys() | map('string') | list -%}
            {%- set glob = (raw_dir ~ '/' ~ node.name ~ '.*csv') | replace("'", "''") -%}
            {%- set is_header -%}
                coalesce({% for c in columns %}{{ c }} = '{{ c }}'{{ ' and ' if not loop.last }}{% endfor %}, false)
            {%- endset -%}
            {%- set text_columns -%}
                {%- for c in columns %}cast(null as varchar) as {{ c }}, {% endfor -%}
            {%- endset -%}
            {%- set read_csv -%}
                read_csv('{{ glob }}', auto_detect = false, header = false, delim = ',',
                    quote = '"', escape = '"', filename = true,
                    columns = { {%- for c in columns %}'{{ c }}': 'varchar'{{ ', ' if not loop.last }}{% endfor -%} }
            {%- endset -%}
            {%- if raw_file_count(raw_dir ~ '/' ~ node.name ~ '.*csv') == 0 -%}
                {%- do run_query(
                    'create or replace view ' ~ relation ~ ' as select ' ~ text_columns
                    ~ 'cast(null as varchar) as filename, cast(null as varchar) as _corrupt_record'
                    ~ ' where false'
                ) -%}
            {%- else -%}
                {%- set rejects = 'raw_rejects_' ~ node.name -%}
                {%- set scans = 'raw_scans_' ~ node.name -%}
                {%- do run_query('drop table if exists temp.main.' ~ rejects) -%}
                {%- do run_query('drop table if exists temp.main.' ~ scans) -%}
                {%- set headerless = run_query(
                    "select file from glob('" ~ glob ~ "') except select filename from "
                    ~ read_csv ~ ", store_rejects = true, rejects_table = '" ~ rejects
                    ~ "', rejects_scan = '" ~ scans ~ "') where " ~ is_header ~ ' order by 1'
                ).columns[0].values() -%}
                {%- if headerless | length > 0 -%}
                    {{ exceptions.raise_compiler_error(
                        "raw file " ~ headerless | join(', ') ~ ": the first line is not the header '"
                        ~ columns | join(',') ~ "' (the raw contract's columns in this order, "
                        ~ "docs/contracts.md)"
                    ) }}
                {%- endif -%}
                {%- do run_query(
                    'create or replace table ' ~ malformed ~ ' as'
                    ~ ' select distinct s.file_path as filename, e.line,'
                    ~ ' trim(e.csv_line, chr(13) || chr(10)) as line_text'
                    ~ ' from ' ~ rejects ~ ' as e join ' ~ scans ~ ' as s'
                    ~ ' on e.scan_id = s.scan_id and e.file_id = s.file_id'
                ) -%}
                {%- do run_query(
                    'create or replace view ' ~ relation ~ ' as'
                    ~ ' select ' ~ columns | join(', ') ~ ', filename, cast(null as varchar) as _corrupt_record'
                    ~ ' from ' ~ read_csv ~ ', ignore_errors = true) where not ' ~ is_header
                    ~ ' union all select ' ~ text_columns ~ 'filename, line_text from ' ~ malformed
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
{#- Spark: the raw files of a source table as a view `crm.<name>` over at most two external
    CSV tables, every column text, each row with its file (`filename`, from input_file_name()):
    `<name>__lines` reads the files whose every line is a whole record (split by line, so one
    file is read by many tasks at once), `<name>__records` the others with multiLine (a quoted
    field may then hold a line break, as DuckDB's reader allows; Spark reads such a file as one
    unsplittable task). Which file goes where: raw_files_by_reading. enforceSchema false makes
    a header that does not match the contract's columns an error (naming the file) instead of
    a silent shift. In PERMISSIVE mode a malformed line is kept with its text in
    `_corrupt_record` (columnNameOfCorruptRecord) and its fields padded or cut, which staging
    drops (macro raw_lines). A table without any file (the optional lead_attribute_changes) is
    an empty view. -#}
{% macro spark__create_raw_relations() -%}
    {%- if execute -%}
        {%- set raw_dir = env_var('LEAD_SCORING_RAW_DIR', '../data/raw') -%}
        {%- for node in graph.sources.values() if node.source_name == 'crm' -%}
            {%- if loop.first -%}
                {%- do run_query('create database if not exists ' ~ node.schema) -%}
            {%- endif -%}
            {%- set relation = node.schema ~ '.' ~ node.name -%}
            {%- set columns = node.columns.keys() | map('string') | list -%}
            {#- a warehouse built before the view took the table's name holds a table there -#}
            {%- if run_query('show views in ' ~ node.schema ~ " like '" ~ node.name ~ "'") | length > 0 -%}
                {%- do run_query('drop view ' ~ relation) -%}
            {%- else -%}
                {%- do run_query('drop table if exists ' ~ relation) -%}
            {%- endif -%}
            {%- set files = raw_files_by_reading(raw_dir, node.name) -%}
            {%- set branches = [] -%}
            {%- for reading in ['lines', 'records'] -%}
                {%- do run_query('drop table if exists ' ~ relation ~ '__' ~ reading) -%}
                {%- if files[reading] -%}
                    {%- do run_query(
                        'create table ' ~ relation ~ '__' ~ reading ~ ' ('
                        ~ columns | join(' string, ') ~ ' string, _corrupt_record string) using csv'
                        ~ " options (path '" ~ raw_dir | replace("'", "\\'") ~ "'"
                        ~ ", pathGlobFilter '" ~ files[reading] ~ "', header 'true'"
                        ~ ", enforceSchema 'false', multiLine '" ~ (reading == 'records') | lower
                        ~ "', escape '\"', mode 'PERMISSIVE', columnNameOfCorruptRecord '_corrupt_record')"
                    ) -%}
                    {%- do branches.append(
                        'select ' ~ columns | join(', ') ~ ', _corrupt_record, input_file_name() as filename'
                        ~ ' from ' ~ relation ~ '__' ~ reading
                    ) -%}
                {%- endif -%}
            {%- endfor -%}
            {%- if not branches -%}
                {%- set nulls = [] -%}
                {%- for c in columns + ['_corrupt_record', 'filename'] -%}
                    {%- do nulls.append('cast(null as string) as ' ~ c) -%}
                {%- endfor -%}
                {%- do branches.append('select ' ~ nulls | join(', ') ~ ' where false') -%}
            {%- endif -%}
            {%- do run_query('create view ' ~ relation ~ ' as ' ~ branches | join(' union all ')) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- Spark: which raw files of a source table can be read line by line ('lines') and which only
    as multi-line records ('records'), each as a pathGlobFilter ('' when none). A file goes to
    'lines' when splitting it at line breaks cannot change what the CSV reader makes of it:
    every line (split at \n only, so a stray carriage return shows) is, on its own, a complete
    record in canonical CSV: each field either unquoted without a quote or carriage return, or
    wholly quoted with "" escapes, fields joined by commas; no blank line, no byte-order mark,
    no undecodable byte; and either every line or none ends with a carriage return (CRLF or LF
    files). By induction from the file's first line, every line then starts and ends outside a
    quoted field, so the multiLine reader (univocity, a quote opens a field only at its start)
    and the line reader parse the same records with the same parser; a wrong number of fields
    is still one malformed line on both. Any other line (a quote left open, a quoted line
    break, a quote inside an unquoted field) sends its whole file to 'records', where what
    follows it may belong to the same record. This check is one splittable scan of the file's
    text; a line without a quote, carriage return, byte-order mark or undecodable byte skips
    the regular expression (it is canonical when not blank): 69 s for the 30M lines of 1M
    leads on local[2], where the full expression on every line took 230 s. A file name with a glob
    character keeps every file of the table in 'records' (the filter lists file names). -#}
{% macro raw_files_by_reading(raw_dir, name) -%}
    {#- the quoted form first: the repetitions are possessive (no backtracking on long lines),
        so an empty unquoted match must not win before a quote -#}
    {%- set field -%}(?:"(?:[^"\\r\\x{feff}\\x{fffd}]++|"")*+"|[^",\\r\\x{feff}\\x{fffd}]*+){%- endset -%}
    {%- set line = "regexp_replace(value, '\\r$', '')" -%}
    {%- set view = 'raw_text_' ~ name -%}
    {%- do run_query(
        'create or replace temporary view ' ~ view ~ " using text options (path '"
        ~ raw_dir | replace("'", "\\'") ~ "', pathGlobFilter '" ~ name ~ ".*csv', lineSep '\\n')"
    ) -%}
    {%- set scan = run_query(
        "select regexp_extract(input_file_name(), '[^/]*$', 0) as file,"
        ~ ' count(*) as n_lines,'
        ~ ' count_if(endswith(value, chr(13))) as n_crlf,'
        ~ " count_if(case when value rlike '[\"\\\\r\\\\x{feff}\\\\x{fffd}]'"
        ~ ' then trim(' ~ line ~ ") = '' or not " ~ line ~ " rlike '^" ~ field ~ '(?:,' ~ field ~ ")*+$'"
        ~ " else trim(value) = '' end) as n_irregular"
        ~ ' from ' ~ view ~ ' group by 1 order by 1'
    ) -%}
    {%- do run_query('drop view ' ~ view) -%}
    {%- set lines, records = [], [] -%}
    {%- for row in scan.rows -%}
        {%- set whole = row['n_irregular'] == 0 and row['n_crlf'] in [0, row['n_lines']] -%}
        {%- do (lines if whole else records).append(row['file']) -%}
    {%- endfor -%}
    {%- set names = lines + records -%}
    {%- set unsafe = [] -%}
    {%- for file in names if modules.re.search('[^A-Za-z0-9._+=@-]', file) -%}
        {%- do unsafe.append(file) -%}
    {%- endfor -%}
    {%- if unsafe -%}
        {%- set lines, records = [], names -%}
    {%- endif -%}
    {{ log('raw ' ~ name ~ ': ' ~ lines | length ~ ' file(s) read by line, ' ~ records | length ~ ' as multi-line records', info=true) }}
    {{ return({'lines': glob_of(lines), 'records': glob_of(records)}) }}
{%- endmacro %}

{#- A pathGlobFilter that matches exactly these file names ('' for none). -#}
{% macro glob_of(files) -%}
    {%- if files | length > 1 -%}
        {{ return('{' ~ files | join(',') ~ '}') }}
    {%- endif -%}
    {{ return(files | join('')) }}
{%- endmacro %}

{#- How many files match `path` (a glob). On Spark every raw relation exists (an absent optional
    file reads as an empty table, see create_raw_relations), so this is 1 there. -#}
{% macro raw_file_count(path) -%}
    {{ return(adapter.dispatch('raw_file_count', 'lead_scoring')(path)) }}
{%- endmacro %}
{% macro default__raw_file_count(path) -%}
    {{ return(run_query(
        "select count(*) from glob('" ~ path | replace("'", "''") ~ "')"
    ).columns[0].values()[0]) }}
{%- endmacro %}
{% macro spark__raw_file_count(path) -%}
    {{ return(1) }}
{%- endmacro %}

{#- The name of the raw file a source row was read from, without its folder (the base file
    `<name>.csv` or an increment's part file `<name>.part-<seq>-<digest>.csv`): names sort in
    landing order, so the greatest is the latest landing. dbt-duckdb's read_csv adds the path as
    column `filename`; Spark knows it per row as a file URI. -#}
{% macro raw_file_name() -%}
    {{ return(adapter.dispatch('raw_file_name', 'lead_scoring')()) }}
{%- endmacro %}
{% macro default__raw_file_name() -%}
    parse_filename(filename)
{%- endmacro %}
{% macro spark__raw_file_name() -%}
    regexp_extract(filename, '[^/]*$', 0)
{%- endmacro %}
