-- intermediate.int_customer_feature_state, built in full: every customer's state at the as-of
-- date D from their whole history (sessions up to D, events whose own day is up to D). The
-- columns are described in ddl/features.sql. Bound parameter:
--   as_of_date  D
-- One pass over the sessions for every count and sum (windows, hours and weekdays included),
-- one for the counts per category, two over the events: each scans and aggregates in
-- parallel (hash aggregates; the cart sessions' distinct count sorts in the workers).

with

-- import
sessions as not materialized (
    select
        customer_id,
        session_date,
        purchase_made,
        purchase_amount,
        browsing_time_sec,
        pages_viewed,
        added_to_cart,
        discount_amount,
        product_category,
        session_hour,
        session_weekday
    from intermediate.int_sessions_enriched
    where session_date <= %(as_of_date)s::date
),

events as not materialized (
    select customer_id, session_id, event_type
    from staging.stg_events
    where event_date <= %(as_of_date)s::date
),

-- logic
session_totals as (
    -- one pass over the sessions for every count and sum (ddl/feature_session_totals.sql)
    select *
    from intermediate.int_customer_session_totals('-infinity', %(as_of_date)s::date)
),

category_counts as (
    select
        customer_id,
        product_category as category,
        count(*) as sessions,
        count(*) filter (where purchase_made) as purchases
    from sessions
    where product_category is not null
    group by customer_id, product_category
),

-- the counts per category in byte order ("C" collation): the first of the largest counts is
-- then the mode with the tie rule (the first in byte order), and the modes need no ranks
-- of the categories (a window function, and a join that the planner misjudged)
categories as (
    select
        customer_id,
        array_agg(category order by category collate "C") as categories,
        array_agg(sessions order by category collate "C") as category_sessions,
        array_agg(purchases order by category collate "C") as category_purchases,
        max(sessions) as top_category_sessions,
        max(purchases) filter (where purchases > 0) as favourite_category_purchases
    from category_counts
    group by customer_id
),

event_totals as (
    select
        customer_id,
        count(*) as events,
        count(*) filter (where event_type = 'view') as view_events
    from events
    group by customer_id
),

cart_sessions as (
    -- a session with several cart events counts once: the workers sort the cart events by
    -- customer and session, and the distinct count reads them in that order, without the
    -- hash of every (customer, session) pair that the leader built alone
    select customer_id, count(distinct session_id) as sessions_with_cart_event
    from events
    where event_type = 'cart'
    group by customer_id
),

final as (
    select
        -- ids
        coalesce(s.customer_id, e.customer_id) as customer_id,
        %(as_of_date)s::date as as_of_date,
        -- frequency and money (a customer with events only has no session)
        coalesce(s.sessions_count, 0) as sessions_count,
        coalesce(s.frequency, 0) as frequency,
        coalesce(s.monetary, 0) as monetary,
        s.last_purchase_date,
        s.last_session_date,
        -- totals behind the averages
        coalesce(s.browsing_time_sec_sum, 0) as browsing_time_sec_sum,
        coalesce(s.browsing_time_sec_known, 0) as browsing_time_sec_known,
        coalesce(s.pages_viewed_sum, 0) as pages_viewed_sum,
        coalesce(s.pages_viewed_known, 0) as pages_viewed_known,
        coalesce(s.added_to_cart_sum, 0) as added_to_cart_sum,
        coalesce(s.added_to_cart_known, 0) as added_to_cart_known,
        coalesce(s.purchases_with_discount, 0) as purchases_with_discount,
        coalesce(s.purchases_with_discount_known, 0) as purchases_with_discount_known,
        coalesce(s.weekend_sessions, 0) as weekend_sessions,
        -- trailing windows
        coalesce(s.sessions_last_7d, 0) as sessions_last_7d,
        coalesce(s.sessions_last_30d, 0) as sessions_last_30d,
        coalesce(s.sessions_last_90d, 0) as sessions_last_90d,
        coalesce(s.purchases_last_7d, 0) as purchases_last_7d,
        coalesce(s.purchases_last_30d, 0) as purchases_last_30d,
        coalesce(s.purchases_last_90d, 0) as purchases_last_90d,
        coalesce(s.monetary_last_30d, 0) as monetary_last_30d,
        coalesce(s.monetary_last_365d, 0) as monetary_last_365d,
        coalesce(s.sessions_prev_90d, 0) as sessions_prev_90d,
        coalesce(s.monetary_prev_90d, 0) as monetary_prev_90d,
        -- sessions per value
        c.categories,
        c.category_sessions,
        c.category_purchases,
        s.hour_sessions,
        s.weekday_sessions,
        -- the modes
        c.categories[array_position(c.category_sessions, c.top_category_sessions)]
            as top_category,
        c.categories[array_position(c.category_purchases, c.favourite_category_purchases)]
            as favourite_category,
        marts.mode_position(s.hour_sessions) - 1 as favourite_hour,
        marts.mode_position(s.weekday_sessions) as favourite_weekday,
        -- events
        coalesce(e.events, 0) as events,
        coalesce(e.view_events, 0) as view_events,
        coalesce(cs.sessions_with_cart_event, 0) as sessions_with_cart_event
    from session_totals as s
    full join event_totals as e on e.customer_id = s.customer_id
    left join categories as c on c.customer_id = s.customer_id
    left join cart_sessions as cs on cs.customer_id = e.customer_id
)

select * from final
