-- intermediate.int_customer_feature_state, built in full: every customer's state at the as-of
-- date D from their whole history (sessions up to D, events whose own day is up to D). The
-- columns are described in ddl/features.sql. Bound parameter:
--   as_of_date  D
-- One pass over the sessions for every count and sum (windows, hours and weekdays included),
-- one for the counts per category, two over the events: each a parallel hash aggregation,
-- none sorts.

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

category_ranks as (
    -- each category's place in byte order ("C" collation), for the tie rule of the modes
    select category, row_number() over (order by category collate "C") as category_rank
    from (select distinct category from staging.stg_products where category is not null) as c
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

-- the modes of the categories: arrays compare element by element, so the largest
-- [count, -rank] holds the most frequent category, a tie going to the first in byte order
categories as (
    select
        c.customer_id,
        array_agg(c.category) as categories,
        array_agg(c.sessions) as category_sessions,
        array_agg(c.purchases) as category_purchases,
        -(max(array[c.sessions, -r.category_rank]))[2] as top_category_rank,
        -(max(array[c.purchases, -r.category_rank]) filter (where c.purchases > 0))[2]
            as favourite_category_rank
    from category_counts as c
    join category_ranks as r on r.category = c.category
    group by c.customer_id
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
    -- a session with several cart events counts once
    select customer_id, count(*) as sessions_with_cart_event
    from (
        select distinct customer_id, session_id from events where event_type = 'cart'
    ) as carts
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
        top_rank.category as top_category,
        favourite_rank.category as favourite_category,
        marts.mode_position(s.hour_sessions) - 1 as favourite_hour,
        marts.mode_position(s.weekday_sessions) as favourite_weekday,
        -- events
        coalesce(e.events, 0) as events,
        coalesce(e.view_events, 0) as view_events,
        coalesce(cs.sessions_with_cart_event, 0) as sessions_with_cart_event
    from session_totals as s
    full join event_totals as e on e.customer_id = s.customer_id
    left join categories as c on c.customer_id = s.customer_id
    left join category_ranks as top_rank on top_rank.category_rank = c.top_category_rank
    left join category_ranks as favourite_rank
        on favourite_rank.category_rank = c.favourite_category_rank
    left join cart_sessions as cs on cs.customer_id = e.customer_id
)

select * from final
