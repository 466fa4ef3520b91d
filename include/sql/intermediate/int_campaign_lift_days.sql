-- int_campaign_lift_days: one row per campaign id and day, over the sessions that carry the
-- campaign id: sessions, orders, revenue, and the sum of squared order values (for the
-- variance of revenue per session).
-- Free of parameters: callers filter on activity_date (pushed below the aggregation). Which
-- days belong to a campaign's window is the caller's business (core.campaigns).

with

sessions as (
    select * from core.sessions
),

final as (
    select
        -- ids
        campaign_id,
        -- time
        session_date as activity_date,
        -- volume
        count(*) as sessions,
        count(*) filter (where purchase_made) as orders,
        -- money
        sum(purchase_amount) as revenue,
        sum(purchase_amount * purchase_amount) as revenue_squared
    from sessions
    where campaign_id is not null
    group by campaign_id, session_date
)

select * from final
