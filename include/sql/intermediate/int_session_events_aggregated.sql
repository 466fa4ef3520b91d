-- intermediate.int_session_events_aggregated: the events of a session, per day they happened
-- on (grouping by the day keeps a filter "up to the as-of date" applicable to this view).

with

events as (
    select * from staging.stg_events
),

final as (
    select
        -- ids
        customer_id,
        session_id,
        event_date,
        -- counts
        count(*) filter (where event_type = 'view') as view_events,
        count(*) filter (where event_type = 'cart') as cart_events,
        count(*) as events
    from events
    group by customer_id, session_id, event_date
)

select * from final
