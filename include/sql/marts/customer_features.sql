-- marts.customer_features (a view): for every registered snapshot D (marts.feature_snapshots),
-- one row per customer signed up on or before D, computed from data up to the end of D only
-- (point in time). Definitions and NULL rules: docs/features.md. The features are read off
-- each customer's additive state (intermediate.int_customer_feature_state: counts, sums,
-- windows and modes): their latest state version V in [base_date, D], which holds exact
-- all-time values at D (a roll-forward writes a version for every customer with new data)
-- and the trailing windows at V, moved here to D by the sessions that cross a window edge
-- in between (intermediate.int_customer_window_moves). What depends on D itself (tenure,
-- recency, the calendar) is computed here, at read time. Read one snapshot with
-- `where as_of_date = D`: the filter reaches the registry and, through it, prunes the state's
-- partitions at run time.

with

-- import
customers as (
    select customer_id, signup_date
    from core.customers
),

-- the state partitions of each snapshot's chain, [base_date, as_of_date]: the join with the
-- registry row lets the executor prune the others (a nested loop over that one row)
chain as not materialized (
    select f.as_of_date as snapshot_date, s.*
    from marts.feature_snapshots as f
    join intermediate.int_customer_feature_state as s
        on s.as_of_date between f.base_date and f.as_of_date
),

-- logic
state as (
    -- each customer's latest version in the chain: the versions without a later one (a hash
    -- anti join on the key, read from the partitions' primary keys; a `distinct on` sorted
    -- the whole rows, and a lookup per customer of their latest version cost more than this)
    select s.*
    from chain as s
    where not exists (
        select
        from chain as later
        where later.snapshot_date = s.snapshot_date
          and later.customer_id = s.customer_id
          and later.as_of_date > s.as_of_date
    )
),

moves as (
    -- the latest versions' windows moved from their date V to the snapshot's date D (a full
    -- build's snapshot has every version at D: nothing to move)
    select f.as_of_date as snapshot_date, m.*
    from marts.feature_snapshots as f
    cross join lateral intermediate.int_customer_window_moves(
        f.base_date, f.as_of_date - 1, f.as_of_date
    ) as m
    where f.base_date < f.as_of_date
),

final as (
    select
        -- ids
        c.customer_id,
        f.as_of_date,
        -- tenure
        f.as_of_date - c.signup_date as days_since_signup,
        -- recency
        s.last_purchase_date,
        f.as_of_date - s.last_purchase_date as recency_days,
        marts.recency_bucket(f.as_of_date - s.last_purchase_date) as recency_bucket,
        s.last_session_date,
        f.as_of_date - s.last_session_date as days_since_last_session,
        -- frequency and money
        coalesce(s.frequency, 0) as frequency,
        coalesce(s.monetary, 0) as monetary,
        round(s.monetary / nullif(s.frequency, 0), 2) as avg_order_value,
        coalesce(s.sessions_count, 0) as sessions_count,
        -- an average is its sum over the number of values summed (avg() computes just that)
        round(s.browsing_time_sec_sum / nullif(s.browsing_time_sec_known, 0), 4)
            as avg_session_duration_sec,
        round(s.frequency::numeric / nullif(s.sessions_count, 0), 4) as purchase_rate,
        -- trailing windows: those at V plus their moves to D
        coalesce(s.sessions_last_7d + coalesce(m.sessions_last_7d, 0), 0) as sessions_last_7d,
        coalesce(s.sessions_last_30d + coalesce(m.sessions_last_30d, 0), 0) as sessions_last_30d,
        coalesce(s.sessions_last_90d + coalesce(m.sessions_last_90d, 0), 0) as sessions_last_90d,
        coalesce(s.purchases_last_7d + coalesce(m.purchases_last_7d, 0), 0) as purchases_last_7d,
        coalesce(s.purchases_last_30d + coalesce(m.purchases_last_30d, 0), 0) as purchases_last_30d,
        coalesce(s.purchases_last_90d + coalesce(m.purchases_last_90d, 0), 0) as purchases_last_90d,
        coalesce(s.monetary_last_30d + coalesce(m.monetary_last_30d, 0), 0) as monetary_last_30d,
        coalesce(s.monetary_last_365d + coalesce(m.monetary_last_365d, 0), 0) as cltv_proxy_365d,
        coalesce(s.sessions_prev_90d + coalesce(m.sessions_prev_90d, 0), 0) as sessions_prev_90d,
        coalesce(s.monetary_prev_90d + coalesce(m.monetary_prev_90d, 0), 0) as monetary_prev_90d,
        -- trends: the last 30 days against the monthly average of the 90 before
        marts.trend_ratio(
            s.sessions_last_30d + coalesce(m.sessions_last_30d, 0),
            s.sessions_prev_90d + coalesce(m.sessions_prev_90d, 0)
        ) as sessions_trend_30d,
        marts.trend_ratio(
            s.monetary_last_30d + coalesce(m.monetary_last_30d, 0),
            s.monetary_prev_90d + coalesce(m.monetary_prev_90d, 0)
        ) as monetary_trend_30d,
        -- engagement
        round(s.pages_viewed_sum::numeric / nullif(s.pages_viewed_known, 0), 4)
            as avg_pages_per_session,
        case
            when s.events > 0
                then round(s.view_events::numeric / nullif(s.sessions_count, 0), 4)
        end as product_views_per_session,
        case
            when s.events > 0
                then round(s.sessions_with_cart_event::numeric / nullif(s.sessions_count, 0), 4)
            else round(s.added_to_cart_sum::numeric / nullif(s.added_to_cart_known, 0), 4)
        end as add_to_cart_rate,
        round(
            s.purchases_with_discount::numeric / nullif(s.purchases_with_discount_known, 0), 4
        ) as discount_usage_share,
        -- categories
        case
            when s.top_category is not null then cardinality(s.categories)::bigint
        end as categories_viewed,
        -- in the "C" collation, as the modes' tie rule and the mart's columns have always been
        s.top_category collate "C" as top_category,
        s.favourite_category collate "C" as favourite_category,
        -- habits
        s.favourite_hour,
        s.favourite_weekday,
        round(s.weekend_sessions::numeric / nullif(s.sessions_count, 0), 4)
            as weekend_session_share,
        -- calendar of the as-of date
        extract(month from f.as_of_date)::integer as as_of_month,
        extract(quarter from f.as_of_date)::integer as as_of_quarter,
        extract(month from f.as_of_date) in (11, 12) as is_holiday_season,
        marts.season(f.as_of_date) as season
    from marts.feature_snapshots as f
    join customers as c on c.signup_date <= f.as_of_date
    left join state as s
        on s.snapshot_date = f.as_of_date
        and s.customer_id = c.customer_id
    left join moves as m
        on m.snapshot_date = f.as_of_date
        and m.customer_id = s.customer_id
        and m.version_date = s.as_of_date
)

select * from final
