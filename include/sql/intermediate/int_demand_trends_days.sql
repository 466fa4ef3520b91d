-- int_demand_trends_days: one row per day with sessions, with the day's sessions, orders and
-- revenue, in total and for the sessions that carry a campaign id.
-- Free of parameters: callers filter on activity_date (pushed below the aggregation). Days
-- without sessions have no row; the caller fills them with zeros.

with

sessions as (
    select * from core.sessions
),

final as (
    select
        -- time
        session_date as activity_date,
        -- volume
        count(*) as sessions,
        count(*) filter (where purchase_made) as orders,
        -- money
        sum(purchase_amount) as revenue,
        -- campaign-carrying sessions (the rest are the untreated baseline)
        count(*) filter (where campaign_id is not null) as campaign_sessions,
        count(*) filter (where campaign_id is not null and purchase_made) as campaign_orders,
        coalesce(sum(purchase_amount) filter (where campaign_id is not null), 0)
            as campaign_revenue
    from sessions
    group by session_date
)

select * from final
