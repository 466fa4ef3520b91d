-- intermediate.int_customer_feature_state, rolled forward: the state at D of the customers
-- whose features move between P and D, from their state at P plus the sessions and events of
-- (P, D] only. Those are the customers with new data in (P, D] and the customers with a
-- session that slides out of (or across) a trailing window between P and D; every other
-- customer's latest version holds their exact state at D already. Counts, sums and the
-- counts per value add up; the maximum dates take the later one; the modes are picked again
-- from the summed counts; the trailing windows move from those of the state at P (exact at P,
-- by the same rule) by the sessions that enter or leave them. Correct only when no data dated
-- on or before P arrived after the state at P was written. Bound parameters:
--   as_of_date            D
--   previous_date         P, a registered snapshot (P < D)
--   base_date             the full build that the snapshot at P chains from (<= P)
--   changed_customer_ids  the customers with a session, an event or a signup in (P, D]

with

-- import
changed as materialized (
    -- one list for every lookup below (an array repeated in each filter costs planning time)
    select unnest(%(changed_customer_ids)s::text[]) as customer_id
),

new_sessions as materialized (
    -- the new sessions' categories (their counts and sums come from session_totals)
    select
        customer_id,
        purchase_made,
        product_category
    -- every customer with a session in (P, D] is a changed customer
    from intermediate.int_sessions_enriched
    where session_date > %(previous_date)s::date
      and session_date <= %(as_of_date)s::date
),

edge_days as (
    -- the days that a window edge e crosses between P and D, (P - e, D - e], for e in 0, 7,
    -- 30, 90, 120 and 365: the sessions that can enter or leave a trailing window
    select distinct day::date as day
    from unnest(array[0, 7, 30, 90, 120, 365]) as edge
    cross join lateral generate_series(
        %(previous_date)s::date - edge + 1, %(as_of_date)s::date - edge, interval '1 day'
    ) as day
),

edge_sessions as (
    -- of every customer (a few days of sessions), read day by day from
    -- sessions_date_covering_idx alone (an index-only scan)
    select customer_id, session_date, purchase_made, purchase_amount
    from staging.stg_sessions
    where session_date = any (array(select day from edge_days))
),

new_events as not materialized (
    select customer_id, session_id, event_type
    from staging.stg_events
    -- every customer with an event in (P, D] is a changed customer
    where event_time >= %(previous_date)s::date + 1
      and event_time < %(as_of_date)s::date + 1
),

category_ranks as (
    -- each category's place in byte order ("C" collation), for the tie rule of the modes
    select category, row_number() over (order by category collate "C") as category_rank
    from (select distinct category from staging.stg_products where category is not null) as c
),

-- logic
session_totals as (
    -- the new days' counts and sums in one pass (ddl/feature_session_totals.sql); its
    -- trailing windows are those of the new sessions alone, which window_moves accounts for
    select *
    from intermediate.int_customer_session_totals(
        %(previous_date)s::date, %(as_of_date)s::date
    )
),

window_moves as (
    -- per window: the edge sessions inside it at D, minus those inside it at P (a session
    -- inside both counts +1 - 1)
    select
        customer_id,
        count(*) filter (where session_date > %(as_of_date)s::date - 7)
        - count(*) filter (
            where session_date > %(previous_date)s::date - 7
              and session_date <= %(previous_date)s::date
        ) as sessions_last_7d,
        count(*) filter (where session_date > %(as_of_date)s::date - 30)
        - count(*) filter (
            where session_date > %(previous_date)s::date - 30
              and session_date <= %(previous_date)s::date
        ) as sessions_last_30d,
        count(*) filter (where session_date > %(as_of_date)s::date - 90)
        - count(*) filter (
            where session_date > %(previous_date)s::date - 90
              and session_date <= %(previous_date)s::date
        ) as sessions_last_90d,
        count(*) filter (where purchase_made and session_date > %(as_of_date)s::date - 7)
        - count(*) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 7
              and session_date <= %(previous_date)s::date
        ) as purchases_last_7d,
        count(*) filter (where purchase_made and session_date > %(as_of_date)s::date - 30)
        - count(*) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 30
              and session_date <= %(previous_date)s::date
        ) as purchases_last_30d,
        count(*) filter (where purchase_made and session_date > %(as_of_date)s::date - 90)
        - count(*) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 90
              and session_date <= %(previous_date)s::date
        ) as purchases_last_90d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 30
        ), 0)
        - coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 30
              and session_date <= %(previous_date)s::date
        ), 0) as monetary_last_30d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made and session_date > %(as_of_date)s::date - 365
        ), 0)
        - coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 365
              and session_date <= %(previous_date)s::date
        ), 0) as monetary_last_365d,
        count(*) filter (
            where session_date > %(as_of_date)s::date - 120
              and session_date <= %(as_of_date)s::date - 30
        )
        - count(*) filter (
            where session_date > %(previous_date)s::date - 120
              and session_date <= %(previous_date)s::date - 30
        ) as sessions_prev_90d,
        coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date > %(as_of_date)s::date - 120
              and session_date <= %(as_of_date)s::date - 30
        ), 0)
        - coalesce(sum(purchase_amount) filter (
            where purchase_made
              and session_date > %(previous_date)s::date - 120
              and session_date <= %(previous_date)s::date - 30
        ), 0) as monetary_prev_90d
    from edge_sessions
    group by customer_id
),

touched as materialized (
    -- the customers who get a version at D: the changed ones, and those whose trailing
    -- windows move (a session of theirs leaves a window, or crosses from the last 30 days
    -- into the 90 before)
    select customer_id from changed
    union
    select customer_id
    from window_moves
    where sessions_last_7d <> 0
       or sessions_last_30d <> 0
       or sessions_last_90d <> 0
       or purchases_last_7d <> 0
       or purchases_last_30d <> 0
       or purchases_last_90d <> 0
       or monetary_last_30d <> 0
       or monetary_last_365d <> 0
       or sessions_prev_90d <> 0
       or monetary_prev_90d <> 0
),

base as (
    -- each touched customer's state at P: their latest version in the chain of the snapshot
    -- at P, [base_date, P], whose trailing windows are those at P; one backward probe of the
    -- state's key per customer and partition (a distinct on sorted all the rows, 743 bytes
    -- wide)
    select s.*
    from touched as t
    cross join lateral (
        select *
        from intermediate.int_customer_feature_state as v
        where v.customer_id = t.customer_id
          and v.as_of_date between %(base_date)s::date and %(previous_date)s::date
        order by v.as_of_date desc
        limit 1
    ) as s
),

-- counts per category: the base's, plus one per new session; only for the customers with a
-- new session in a category (the others keep the base's counts and modes)
category_counts as (
    select customer_id, category, sum(sessions)::bigint as sessions,
        sum(purchases)::bigint as purchases
    from (
        select b.customer_id, v.category, v.sessions, v.purchases
        from base as b
        cross join lateral unnest(b.categories, b.category_sessions, b.category_purchases)
            as v (category, sessions, purchases)
        where b.customer_id in (
            select customer_id from new_sessions where product_category is not null
        )
        union all
        select customer_id, product_category, 1, purchase_made::integer
        from new_sessions
        where product_category is not null
    ) as counts
    group by customer_id, category
),

-- the modes of the categories, as in the full build (int_customer_feature_state.sql)
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
    from new_events
    group by customer_id
),

new_cart_sessions as (
    -- sessions with a first cart event in (P, D]: one with an earlier cart event is counted
    -- already (each looked up through events_session_idx)
    select n.customer_id, count(distinct n.session_id) as sessions_with_cart_event
    from new_events as n
    left join lateral (
        select true as seen
        from staging.stg_events as e
        where e.session_id = n.session_id
          and e.customer_id = n.customer_id
          and e.event_type = 'cart'
          and e.event_time < %(previous_date)s::date + 1
        limit 1
    ) as earlier on true
    where n.event_type = 'cart'
      and earlier.seen is null
    group by n.customer_id
),

customers as (
    -- the changed customers with any data up to D (a signup alone gives no state)
    select customer_id from session_totals
    union
    select customer_id from event_totals
    union
    select customer_id from base where customer_id in (select customer_id from changed)
),

habits as materialized (
    -- the sessions per hour and weekday of the customers with a new session (the others keep
    -- the base's counts and modes); materialized: the modes below then read the summed
    -- counts, not the sums again
    select
        s.customer_id,
        marts.add_counts(b.hour_sessions, s.hour_sessions) as hour_sessions,
        marts.add_counts(b.weekday_sessions, s.weekday_sessions) as weekday_sessions
    from session_totals as s
    left join base as b on b.customer_id = s.customer_id
),

rolled_changed as (
    -- the changed customers: their state at P plus the new data
    select
        -- ids
        k.customer_id,
        %(as_of_date)s::date as as_of_date,
        -- frequency and money
        coalesce(b.sessions_count, 0) + coalesce(s.sessions_count, 0) as sessions_count,
        coalesce(b.frequency, 0) + coalesce(s.frequency, 0) as frequency,
        coalesce(b.monetary, 0) + coalesce(s.monetary, 0) as monetary,
        greatest(b.last_purchase_date, s.last_purchase_date) as last_purchase_date,
        greatest(b.last_session_date, s.last_session_date) as last_session_date,
        -- totals behind the averages
        coalesce(b.browsing_time_sec_sum, 0) + coalesce(s.browsing_time_sec_sum, 0)
            as browsing_time_sec_sum,
        coalesce(b.browsing_time_sec_known, 0) + coalesce(s.browsing_time_sec_known, 0)
            as browsing_time_sec_known,
        coalesce(b.pages_viewed_sum, 0) + coalesce(s.pages_viewed_sum, 0) as pages_viewed_sum,
        coalesce(b.pages_viewed_known, 0) + coalesce(s.pages_viewed_known, 0)
            as pages_viewed_known,
        coalesce(b.added_to_cart_sum, 0) + coalesce(s.added_to_cart_sum, 0)
            as added_to_cart_sum,
        coalesce(b.added_to_cart_known, 0) + coalesce(s.added_to_cart_known, 0)
            as added_to_cart_known,
        coalesce(b.purchases_with_discount, 0) + coalesce(s.purchases_with_discount, 0)
            as purchases_with_discount,
        coalesce(b.purchases_with_discount_known, 0)
            + coalesce(s.purchases_with_discount_known, 0) as purchases_with_discount_known,
        coalesce(b.weekend_sessions, 0) + coalesce(s.weekend_sessions, 0) as weekend_sessions,
        -- trailing windows
        coalesce(b.sessions_last_7d, 0) + coalesce(w.sessions_last_7d, 0)
            as sessions_last_7d,
        coalesce(b.sessions_last_30d, 0) + coalesce(w.sessions_last_30d, 0)
            as sessions_last_30d,
        coalesce(b.sessions_last_90d, 0) + coalesce(w.sessions_last_90d, 0)
            as sessions_last_90d,
        coalesce(b.purchases_last_7d, 0) + coalesce(w.purchases_last_7d, 0)
            as purchases_last_7d,
        coalesce(b.purchases_last_30d, 0) + coalesce(w.purchases_last_30d, 0)
            as purchases_last_30d,
        coalesce(b.purchases_last_90d, 0) + coalesce(w.purchases_last_90d, 0)
            as purchases_last_90d,
        coalesce(b.monetary_last_30d, 0) + coalesce(w.monetary_last_30d, 0)
            as monetary_last_30d,
        coalesce(b.monetary_last_365d, 0) + coalesce(w.monetary_last_365d, 0)
            as monetary_last_365d,
        coalesce(b.sessions_prev_90d, 0) + coalesce(w.sessions_prev_90d, 0)
            as sessions_prev_90d,
        coalesce(b.monetary_prev_90d, 0) + coalesce(w.monetary_prev_90d, 0)
            as monetary_prev_90d,
        -- sessions per value
        case when c.customer_id is null then b.categories else c.categories end as categories,
        case
            when c.customer_id is null then b.category_sessions else c.category_sessions
        end as category_sessions,
        case
            when c.customer_id is null then b.category_purchases else c.category_purchases
        end as category_purchases,
        case when hb.customer_id is null then b.hour_sessions else hb.hour_sessions end
            as hour_sessions,
        case when hb.customer_id is null then b.weekday_sessions else hb.weekday_sessions end
            as weekday_sessions,
        -- the modes
        case when c.customer_id is null then b.top_category else top_rank.category end
            as top_category,
        case when c.customer_id is null then b.favourite_category else favourite_rank.category end
            as favourite_category,
        case
            when hb.customer_id is null then b.favourite_hour
            else marts.mode_position(hb.hour_sessions) - 1
        end as favourite_hour,
        case
            when hb.customer_id is null then b.favourite_weekday
            else marts.mode_position(hb.weekday_sessions)
        end as favourite_weekday,
        -- events
        coalesce(b.events, 0) + coalesce(e.events, 0) as events,
        coalesce(b.view_events, 0) + coalesce(e.view_events, 0) as view_events,
        coalesce(b.sessions_with_cart_event, 0) + coalesce(cs.sessions_with_cart_event, 0)
            as sessions_with_cart_event
    from customers as k
    left join base as b on b.customer_id = k.customer_id
    left join session_totals as s on s.customer_id = k.customer_id
    left join window_moves as w on w.customer_id = k.customer_id
    left join categories as c on c.customer_id = k.customer_id
    left join category_ranks as top_rank on top_rank.category_rank = c.top_category_rank
    left join category_ranks as favourite_rank
        on favourite_rank.category_rank = c.favourite_category_rank
    left join habits as hb on hb.customer_id = k.customer_id
    left join event_totals as e on e.customer_id = k.customer_id
    left join new_cart_sessions as cs on cs.customer_id = k.customer_id
),

rolled_windows as (
    -- the customers whose trailing windows move but who have no new data: their state at P
    -- with the windows moved
    select
        b.customer_id,
        %(as_of_date)s::date as as_of_date,
        -- all-time: as at P
        b.sessions_count,
        b.frequency,
        b.monetary,
        b.last_purchase_date,
        b.last_session_date,
        b.browsing_time_sec_sum,
        b.browsing_time_sec_known,
        b.pages_viewed_sum,
        b.pages_viewed_known,
        b.added_to_cart_sum,
        b.added_to_cart_known,
        b.purchases_with_discount,
        b.purchases_with_discount_known,
        b.weekend_sessions,
        -- trailing windows: those at P, moved
        b.sessions_last_7d + w.sessions_last_7d as sessions_last_7d,
        b.sessions_last_30d + w.sessions_last_30d as sessions_last_30d,
        b.sessions_last_90d + w.sessions_last_90d as sessions_last_90d,
        b.purchases_last_7d + w.purchases_last_7d as purchases_last_7d,
        b.purchases_last_30d + w.purchases_last_30d as purchases_last_30d,
        b.purchases_last_90d + w.purchases_last_90d as purchases_last_90d,
        b.monetary_last_30d + w.monetary_last_30d as monetary_last_30d,
        b.monetary_last_365d + w.monetary_last_365d as monetary_last_365d,
        b.sessions_prev_90d + w.sessions_prev_90d as sessions_prev_90d,
        b.monetary_prev_90d + w.monetary_prev_90d as monetary_prev_90d,
        -- counts per value, modes and events: as at P
        b.categories,
        b.category_sessions,
        b.category_purchases,
        b.hour_sessions,
        b.weekday_sessions,
        b.top_category,
        b.favourite_category,
        b.favourite_hour,
        b.favourite_weekday,
        b.events,
        b.view_events,
        b.sessions_with_cart_event
    from base as b
    join window_moves as w on w.customer_id = b.customer_id
    where not exists (select from changed as c where c.customer_id = b.customer_id)
),

final as (
    select * from rolled_changed
    union all
    select * from rolled_windows
)

select * from final
