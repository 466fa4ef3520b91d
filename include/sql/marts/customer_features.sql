-- marts.customer_features: one row per customer signed up on or before the as-of date D,
-- computed from data up to the end of D only (point in time). Definitions and NULL rules:
-- docs/features.md. Bound parameters:
--   as_of_date    D
--   customer_ids  NULL for every customer, or an array to compute only those customers
--                 (the incremental refresh); the filter then reaches the indexes.

with

-- import
customers as (
    select customer_id, signup_date
    from core.customers
    where signup_date <= %(as_of_date)s::date
      and (%(customer_ids)s::text[] is null or customer_id = any(%(customer_ids)s::text[]))
),

sessions as (
    select *
    from intermediate.int_sessions_enriched
    where session_date <= %(as_of_date)s::date
      and (%(customer_ids)s::text[] is null or customer_id = any(%(customer_ids)s::text[]))
),

session_events as (
    select *
    from intermediate.int_session_events_aggregated
    where event_date <= %(as_of_date)s::date
      and (%(customer_ids)s::text[] is null or customer_id = any(%(customer_ids)s::text[]))
),

-- logic
session_stats as (
    select
        customer_id,
        -- frequency and money
        count(*) as sessions_count,
        count(*) filter (where purchase_made) as frequency,
        coalesce(sum(purchase_amount) filter (where purchase_made), 0) as monetary,
        -- recency
        max(session_date) filter (where purchase_made) as last_purchase_date,
        max(session_date) as last_session_date,
        -- engagement
        round(avg(browsing_time_sec), 4) as avg_session_duration_sec,
        round(avg(pages_viewed), 4) as avg_pages_per_session,
        round(avg(added_to_cart::integer), 4) as cart_flag_rate,
        count(discount_amount) filter (where purchase_made) as purchases_with_discount_known,
        count(*) filter (where purchase_made and discount_amount > 0) as purchases_with_discount,
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
        ), 0) as monetary_prev_90d,
        -- categories (NULL without products.csv); ties go to the first byte by byte
        -- (collation "C", whatever the database's own collation)
        count(distinct product_category) as categories_viewed,
        mode() within group (order by product_category collate "C") as top_category,
        mode() within group (order by product_category collate "C") filter (
            where purchase_made
        ) as favourite_category,
        -- habits; ties go to the earliest hour and weekday
        mode() within group (order by session_hour) as favourite_hour,
        mode() within group (order by session_weekday) as favourite_weekday,
        round(avg((session_weekday >= 6)::integer), 4) as weekend_session_share
    from sessions
    group by customer_id
),

event_stats as (
    select
        customer_id,
        count(distinct session_id) as sessions_with_events,
        count(distinct session_id) filter (where cart_events > 0) as sessions_with_cart_event,
        sum(view_events) as view_events
    from session_events
    group by customer_id
),

final as (
    select
        -- ids
        c.customer_id,
        %(as_of_date)s::date as as_of_date,
        -- tenure
        %(as_of_date)s::date - c.signup_date as days_since_signup,
        -- recency
        s.last_purchase_date,
        %(as_of_date)s::date - s.last_purchase_date as recency_days,
        marts.recency_bucket(%(as_of_date)s::date - s.last_purchase_date) as recency_bucket,
        s.last_session_date,
        %(as_of_date)s::date - s.last_session_date as days_since_last_session,
        -- frequency and money
        coalesce(s.frequency, 0) as frequency,
        coalesce(s.monetary, 0) as monetary,
        round(s.monetary / nullif(s.frequency, 0), 2) as avg_order_value,
        coalesce(s.sessions_count, 0) as sessions_count,
        s.avg_session_duration_sec,
        round(s.frequency::numeric / nullif(s.sessions_count, 0), 4) as purchase_rate,
        -- trailing windows
        coalesce(s.sessions_last_7d, 0) as sessions_last_7d,
        coalesce(s.sessions_last_30d, 0) as sessions_last_30d,
        coalesce(s.sessions_last_90d, 0) as sessions_last_90d,
        coalesce(s.purchases_last_7d, 0) as purchases_last_7d,
        coalesce(s.purchases_last_30d, 0) as purchases_last_30d,
        coalesce(s.purchases_last_90d, 0) as purchases_last_90d,
        coalesce(s.monetary_last_30d, 0) as monetary_last_30d,
        coalesce(s.monetary_last_365d, 0) as cltv_proxy_365d,
        coalesce(s.sessions_prev_90d, 0) as sessions_prev_90d,
        coalesce(s.monetary_prev_90d, 0) as monetary_prev_90d,
        -- trends: the last 30 days against the monthly average of the 90 before
        marts.trend_ratio(s.sessions_last_30d, s.sessions_prev_90d) as sessions_trend_30d,
        marts.trend_ratio(s.monetary_last_30d, s.monetary_prev_90d) as monetary_trend_30d,
        -- engagement
        s.avg_pages_per_session,
        round(e.view_events::numeric / nullif(s.sessions_count, 0), 4)
            as product_views_per_session,
        case
            when e.customer_id is not null
                then round(e.sessions_with_cart_event::numeric / nullif(s.sessions_count, 0), 4)
            else s.cart_flag_rate
        end as add_to_cart_rate,
        round(
            s.purchases_with_discount::numeric / nullif(s.purchases_with_discount_known, 0), 4
        ) as discount_usage_share,
        -- categories
        case when s.top_category is not null then s.categories_viewed end as categories_viewed,
        s.top_category,
        s.favourite_category,
        -- habits
        s.favourite_hour,
        s.favourite_weekday,
        s.weekend_session_share,
        -- calendar of the as-of date
        extract(month from %(as_of_date)s::date)::integer as as_of_month,
        extract(quarter from %(as_of_date)s::date)::integer as as_of_quarter,
        extract(month from %(as_of_date)s::date) in (11, 12) as is_holiday_season,
        marts.season(%(as_of_date)s::date) as season
    from customers as c
    left join session_stats as s on s.customer_id = c.customer_id
    left join event_stats as e on e.customer_id = c.customer_id
)

select * from final
