-- intermediate.int_customer_feature_state, built in full: every customer's state at the as-of
-- date D from their whole history (sessions up to D, events whose own day is up to D). The
-- columns are described in ddl/features.sql. Bound parameter:
--   as_of_date  D
-- Every aggregate here is a count, a sum, a max or an array_agg over a hash: no sort, and
-- each runs as a parallel partial aggregate.

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
    select
        customer_id,
        -- frequency and money
        count(*) as sessions_count,
        count(*) filter (where purchase_made) as frequency,
        coalesce(sum(purchase_amount) filter (where purchase_made), 0) as monetary,
        max(session_date) filter (where purchase_made) as last_purchase_date,
        max(session_date) as last_session_date,
        -- totals behind the averages
        coalesce(sum(browsing_time_sec), 0) as browsing_time_sec_sum,
        count(browsing_time_sec) as browsing_time_sec_known,
        coalesce(sum(pages_viewed), 0) as pages_viewed_sum,
        count(pages_viewed) as pages_viewed_known,
        coalesce(sum(added_to_cart::integer), 0) as added_to_cart_sum,
        count(added_to_cart) as added_to_cart_known,
        count(*) filter (where purchase_made and discount_amount > 0) as purchases_with_discount,
        count(discount_amount) filter (where purchase_made) as purchases_with_discount_known,
        count(*) filter (where session_weekday >= 6) as weekend_sessions,
        -- trailing windows: (D - n, D] holds n days
        count(*) filter (where session_date > %(as_of_date)s::date - 7) as sessions_last_7d,
        count(*) filter (where session_date > %(as_of_date)s::date - 30) as sessions_last_30d,
        count(*) filter (where session_date > %(as_of_date)s::date - 90) as sessions_last_90d,
        count(*) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 7
        ) as purchases_last_7d,
        count(*) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 30
        ) as purchases_last_30d,
        count(*) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 90
        ) as purchases_last_90d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 30
        ), 0) as monetary_last_30d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 365
        ), 0) as monetary_last_365d,
        -- the 90 days before the last 30: (D - 120, D - 30]
        count(*) filter (
            where session_date > %(as_of_date)s::date - 120
              and session_date <= %(as_of_date)s::date - 30
        ) as sessions_prev_90d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date > %(as_of_date)s::date - 120
              and session_date <= %(as_of_date)s::date - 30
        ), 0) as monetary_prev_90d
    from sessions
    group by customer_id
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

hour_counts as (
    select customer_id, session_hour as hour, count(*) as sessions
    from sessions
    group by customer_id, session_hour
),

weekday_counts as (
    select customer_id, session_weekday as weekday, count(*) as sessions
    from sessions
    group by customer_id, session_weekday
),

-- the modes: arrays compare element by element, so the largest [count, -value] holds the
-- most frequent value, a tie going to the smallest value (the first category in byte order)
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

hours as (
    select
        customer_id,
        array_agg(hour) as hours,
        array_agg(sessions) as hour_sessions,
        (-(max(array[sessions, -hour]))[2])::integer as favourite_hour
    from hour_counts
    group by customer_id
),

weekdays as (
    select
        customer_id,
        array_agg(weekday) as weekdays,
        array_agg(sessions) as weekday_sessions,
        (-(max(array[sessions, -weekday]))[2])::integer as favourite_weekday
    from weekday_counts
    group by customer_id
),

-- a session's events counted once per session: a session with a cart event counts once
event_sessions as (
    select
        customer_id,
        session_id,
        count(*) as events,
        count(*) filter (where event_type = 'view') as view_events,
        bool_or(event_type = 'cart') as has_cart_event
    from events
    group by customer_id, session_id
),

event_totals as (
    select
        customer_id,
        sum(events)::bigint as events,
        sum(view_events)::bigint as view_events,
        count(*) filter (where has_cart_event) as sessions_with_cart_event
    from event_sessions
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
        h.hours,
        h.hour_sessions,
        w.weekdays,
        w.weekday_sessions,
        -- the modes
        top_rank.category as top_category,
        favourite_rank.category as favourite_category,
        h.favourite_hour,
        w.favourite_weekday,
        -- events
        coalesce(e.events, 0) as events,
        coalesce(e.view_events, 0) as view_events,
        coalesce(e.sessions_with_cart_event, 0) as sessions_with_cart_event
    from session_totals as s
    full join event_totals as e on e.customer_id = s.customer_id
    left join categories as c on c.customer_id = s.customer_id
    left join category_ranks as top_rank on top_rank.category_rank = c.top_category_rank
    left join category_ranks as favourite_rank
        on favourite_rank.category_rank = c.favourite_category_rank
    left join hours as h on h.customer_id = s.customer_id
    left join weekdays as w on w.customer_id = s.customer_id
)

select * from final
