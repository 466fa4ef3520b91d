-- marts.data_health: one row per source and as-of date.
-- What a data engineer checks first: how much is in core, how many files were rejected, what
-- share of rows was quarantined, and how fresh the latest activity is.

with

-- import: files loaded by runs up to the as-of date (a backfill does not see later files)
load_log as (
    select * from raw.load_log
    where logical_date::date <= %(as_of_date)s::date
),

-- logic
core_counts as (
    select 'customers' as source, count(*) as core_rows,
           max(signup_date) as latest_activity_date
    from core.customers
    union all
    select 'sessions', count(*), max(session_date) from core.sessions
    union all
    select 'products', count(*), null::date from core.products
    union all
    select 'events', count(*), max(event_time)::date from core.events
    union all
    select 'campaigns', count(*), max(end_date) from core.campaigns
),

loads as (
    select
        source,
        count(*) filter (where status = 'loaded') as files_loaded,
        count(*) filter (where status = 'rejected') as files_rejected,
        -- rows of rejected files are not counted: they never reached the row rules
        sum(rows_read) filter (where status = 'loaded') as rows_read,
        sum(rows_quarantined) as rows_quarantined
    from load_log
    group by source
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        c.source,
        -- volume
        c.core_rows,
        coalesce(l.files_loaded, 0) as files_loaded,
        coalesce(l.files_rejected, 0) as files_rejected,
        coalesce(l.rows_read, 0) as rows_read,
        -- quality
        coalesce(l.rows_quarantined, 0) as rows_quarantined,
        round(l.rows_quarantined::numeric / nullif(l.rows_read, 0), 4) as quarantine_rate,
        -- freshness
        c.latest_activity_date,
        %(as_of_date)s::date - c.latest_activity_date as days_since_latest_activity
    from core_counts as c
    left join loads as l on l.source = c.source
)

select * from final
