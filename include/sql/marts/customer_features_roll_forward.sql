-- marts.customer_features, rolled forward: the rows of the customers with no new activity
-- in (P, D], from the snapshot at P. Their all-time features cannot have changed; only the
-- features that depend on D itself move: tenure, recency, and the trailing windows, which
-- lose the sessions that slide out of them. Customers with new activity are computed afresh
-- by customer_features.sql. Bound parameters:
--   as_of_date            D
--   previous_date         P, the snapshot rolled forward (P < D)
--   changed_customer_ids  the customers computed afresh (left out here)

with

-- import
previous as (
    select *
    from marts.customer_features
    where as_of_date = %(previous_date)s::date
      and not (customer_id = any(%(changed_customer_ids)s::text[]))
),

edge_days as (
    -- the days that slide out of a window between P and D: (P - n, D - n] for each n
    select distinct day::date as day
    from unnest(array[7, 30, 90, 120, 365]) as edge
    cross join lateral generate_series(
        %(previous_date)s::date - edge + 1, %(as_of_date)s::date - edge, interval '1 day'
    ) as day
),

sessions as (
    -- read day by day from sessions_date_covering_idx alone (an index-only scan)
    select customer_id, session_date, purchase_made, purchase_amount
    from staging.stg_sessions
    where session_date = any (array(select day from edge_days))
),

-- logic
leaving as (
    select
        customer_id,
        -- sessions
        count(*) filter (where session_date <= %(as_of_date)s::date - 7
                           and session_date > %(previous_date)s::date - 7) as sessions_7d,
        count(*) filter (where session_date <= %(as_of_date)s::date - 30
                           and session_date > %(previous_date)s::date - 30) as sessions_30d,
        count(*) filter (where session_date <= %(as_of_date)s::date - 90
                           and session_date > %(previous_date)s::date - 90) as sessions_90d,
        count(*) filter (where session_date <= %(as_of_date)s::date - 120
                           and session_date > %(previous_date)s::date - 120) as sessions_120d,
        -- purchases
        count(*) filter (where purchase_made
                           and session_date <= %(as_of_date)s::date - 7
                           and session_date > %(previous_date)s::date - 7) as purchases_7d,
        count(*) filter (where purchase_made
                           and session_date <= %(as_of_date)s::date - 30
                           and session_date > %(previous_date)s::date - 30) as purchases_30d,
        count(*) filter (where purchase_made
                           and session_date <= %(as_of_date)s::date - 90
                           and session_date > %(previous_date)s::date - 90) as purchases_90d,
        -- money
        coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date <= %(as_of_date)s::date - 30
              and session_date > %(previous_date)s::date - 30), 0) as monetary_30d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date <= %(as_of_date)s::date - 120
              and session_date > %(previous_date)s::date - 120), 0) as monetary_120d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date <= %(as_of_date)s::date - 365
              and session_date > %(previous_date)s::date - 365), 0) as monetary_365d
    from sessions
    group by customer_id
),

windows as (
    select
        p.*,
        p.sessions_last_30d - coalesce(l.sessions_30d, 0) as new_sessions_last_30d,
        p.monetary_last_30d - coalesce(l.monetary_30d, 0) as new_monetary_last_30d,
        -- (D - 120, D - 30] gains what leaves the last 30 days and loses what leaves 120
        p.sessions_prev_90d + coalesce(l.sessions_30d, 0) - coalesce(l.sessions_120d, 0)
            as new_sessions_prev_90d,
        p.monetary_prev_90d + coalesce(l.monetary_30d, 0) - coalesce(l.monetary_120d, 0)
            as new_monetary_prev_90d,
        l.sessions_7d as leaving_sessions_7d,
        l.sessions_90d as leaving_sessions_90d,
        l.purchases_7d as leaving_purchases_7d,
        l.purchases_30d as leaving_purchases_30d,
        l.purchases_90d as leaving_purchases_90d,
        l.monetary_365d as leaving_monetary_365d
    from previous as p
    left join leaving as l on l.customer_id = p.customer_id
),

final as (
    select
        -- ids
        customer_id,
        %(as_of_date)s::date as as_of_date,
        -- tenure
        %(as_of_date)s::date - (%(previous_date)s::date - days_since_signup) as days_since_signup,
        -- recency
        last_purchase_date,
        %(as_of_date)s::date - last_purchase_date as recency_days,
        marts.recency_bucket(%(as_of_date)s::date - last_purchase_date) as recency_bucket,
        last_session_date,
        %(as_of_date)s::date - last_session_date as days_since_last_session,
        -- frequency and money
        frequency,
        monetary,
        avg_order_value,
        sessions_count,
        avg_session_duration_sec,
        purchase_rate,
        -- trailing windows
        sessions_last_7d - coalesce(leaving_sessions_7d, 0) as sessions_last_7d,
        new_sessions_last_30d as sessions_last_30d,
        sessions_last_90d - coalesce(leaving_sessions_90d, 0) as sessions_last_90d,
        purchases_last_7d - coalesce(leaving_purchases_7d, 0) as purchases_last_7d,
        purchases_last_30d - coalesce(leaving_purchases_30d, 0) as purchases_last_30d,
        purchases_last_90d - coalesce(leaving_purchases_90d, 0) as purchases_last_90d,
        new_monetary_last_30d as monetary_last_30d,
        cltv_proxy_365d - coalesce(leaving_monetary_365d, 0) as cltv_proxy_365d,
        new_sessions_prev_90d as sessions_prev_90d,
        new_monetary_prev_90d as monetary_prev_90d,
        -- trends
        marts.trend_ratio(new_sessions_last_30d, new_sessions_prev_90d) as sessions_trend_30d,
        marts.trend_ratio(new_monetary_last_30d, new_monetary_prev_90d) as monetary_trend_30d,
        -- engagement, categories and habits: all-time, unchanged without new activity
        avg_pages_per_session,
        product_views_per_session,
        add_to_cart_rate,
        discount_usage_share,
        categories_viewed,
        top_category,
        favourite_category,
        favourite_hour,
        favourite_weekday,
        weekend_session_share,
        -- calendar of the as-of date
        extract(month from %(as_of_date)s::date)::integer as as_of_month,
        extract(quarter from %(as_of_date)s::date)::integer as as_of_quarter,
        extract(month from %(as_of_date)s::date) in (11, 12) as is_holiday_season,
        marts.season(%(as_of_date)s::date) as season
    from windows
)

select * from final
