-- intermediate.int_customer_feature_state, rolled forward: a version at D for each customer
-- with new data in (P, D], from their latest version V in the chain of the snapshot at P plus
-- the sessions and events of (P, D] only. Counts, sums and the counts per value add up; the
-- maximum dates take the later one; the modes are picked again where a count moved; the
-- trailing windows are those of V moved to D (intermediate.int_customer_window_moves) plus
-- the new sessions'. Every other customer keeps their latest version, exact at D in all but
-- the trailing windows, which the mart's view moves to D when it reads them. Correct only
-- when no data dated on or before P arrived after the state at P was written. A signup
-- alone changes no state (days_since_signup is the view's). The customers are split into
-- `parts` by a hash of their id and the query computes one part: the parts run side by side
-- on as many connections (features.roll_forward_features). Bound parameters:
--   as_of_date     D
--   previous_date  P, a registered snapshot (P < D)
--   base_date      the full build that the snapshot at P chains from (<= P)
--   part, parts    this part's number (0 <= part < parts) and the number of parts

with

-- import
new_sessions as materialized (
    -- the new sessions' categories (their counts and sums come from session_totals)
    select
        customer_id,
        purchase_made,
        product_category
    -- every customer with a session in (P, D] is a changed customer
    from (
        select customer_id, purchase_made, product_category
        from intermediate.int_sessions_enriched
        where session_date > %(previous_date)s::date
          and session_date <= %(as_of_date)s::date
        -- a fence: below it, the part's filter made the planner expect one in 200 of the day's
        -- sessions (247 of 28,844 at 1,000,000 customers) and join each to every product
        -- (0.5 s); above it, the products are hashed once
        offset 0
    ) as sessions_of_the_days
    where marts.customer_part(customer_id, %(parts)s) = %(part)s
),

new_events as not materialized (
    select customer_id, session_id, event_type
    from staging.stg_events
    -- every customer with an event in (P, D] is a changed customer
    where event_time >= %(previous_date)s::date + 1
      and event_time < %(as_of_date)s::date + 1
      and marts.customer_part(customer_id, %(parts)s) = %(part)s
),

category_ranks as (
    -- each category's place in byte order ("C" collation), for the tie rule of the modes
    select category, row_number() over (order by category collate "C") as category_rank
    from (select distinct category from staging.stg_products where category is not null) as c
),

-- logic
session_totals as (
    -- the new days' counts and sums in one pass (ddl/feature_session_totals.sql); its
    -- trailing windows (at D) are those of the new sessions alone
    select *
    from intermediate.int_customer_session_totals(
        %(previous_date)s::date, %(as_of_date)s::date
    )
    -- on the grouped id: PostgreSQL applies it to the sessions, below the aggregation
    where marts.customer_part(customer_id, %(parts)s) = %(part)s
),

event_totals as (
    select
        customer_id,
        count(*) as events,
        count(*) filter (where event_type = 'view') as view_events
    from new_events
    group by customer_id
),

new_category_counts as (
    -- the new sessions per customer and category
    select
        customer_id,
        product_category as category,
        count(*) as sessions,
        count(*) filter (where purchase_made) as purchases
    from new_sessions
    where product_category is not null
    group by customer_id, product_category
),

new_categories as (
    -- per customer with new sessions in a category: how many categories, and the counts of
    -- the one category when there is one (nearly all; no arrays, which a hash aggregate
    -- builds in a memory context of each customer's own)
    select
        customer_id,
        count(*) as categories,
        min(category) as category,
        sum(sessions)::bigint as sessions,
        sum(purchases)::bigint as purchases
    from new_category_counts
    group by customer_id
),

changed as materialized (
    -- the customers with a session or an event in (P, D], one row each, with the new data
    -- that their version's counts per value are added to in `versions`
    select
        coalesce(s.customer_id, e.customer_id) as customer_id,
        s.hour_sessions,
        s.weekday_sessions,
        n.categories as new_categories,
        n.category as new_category,
        n.sessions as new_category_sessions,
        n.purchases as new_category_purchases
    from session_totals as s
    full join event_totals as e on e.customer_id = s.customer_id
    left join new_categories as n on n.customer_id = s.customer_id
    -- in key order: the full build writes the state in customer_id order, so that the
    -- probes in `versions` then walk its pages in order (181 ms instead of 486 ms at
    -- 1,000,000 customers)
    order by 1
),

versions as materialized (
    -- each changed customer's latest version V in the chain of the snapshot at P,
    -- [base_date, P] (NULLs without one): one backward probe of the state's key per customer
    -- and partition (a distinct on sorted all the rows, 743 bytes wide). The counts per
    -- value come out with the new data added where that is one step: the hours and weekdays
    -- (element by element), and the categories of a customer with one new category (in
    -- place; its modes are the version's or that category, the only count that moved, with
    -- a tie to the first in byte order, as in the full build). A customer with several new
    -- categories keeps the version's here (several_new_categories adds them). Computed here,
    -- once per customer, and not where the row is put together: there the modes of the
    -- hours and weekdays read the sums, which an inlined function would compute again for
    -- each element it reads.
    select
        t.customer_id,
        v.as_of_date as version_date,
        -- frequency and money
        v.sessions_count,
        v.frequency,
        v.monetary,
        v.last_purchase_date,
        v.last_session_date,
        -- totals behind the averages
        v.browsing_time_sec_sum,
        v.browsing_time_sec_known,
        v.pages_viewed_sum,
        v.pages_viewed_known,
        v.added_to_cart_sum,
        v.added_to_cart_known,
        v.purchases_with_discount,
        v.purchases_with_discount_known,
        v.weekend_sessions,
        -- trailing windows at V
        v.sessions_last_7d,
        v.sessions_last_30d,
        v.sessions_last_90d,
        v.purchases_last_7d,
        v.purchases_last_30d,
        v.purchases_last_90d,
        v.monetary_last_30d,
        v.monetary_last_365d,
        v.sessions_prev_90d,
        v.monetary_prev_90d,
        -- sessions per value, with the new ones (see above)
        case
            when t.new_categories = 1 and v.position is null
                then coalesce(v.categories, '{}') || t.new_category
            else v.categories
        end as categories,
        case
            when t.new_categories = 1
                then marts.add_at(v.category_sessions, v.position, t.new_category_sessions)
            else v.category_sessions
        end as category_sessions,
        case
            when t.new_categories = 1
                then marts.add_at(v.category_purchases, v.position, t.new_category_purchases)
            else v.category_purchases
        end as category_purchases,
        marts.add_counts(v.hour_sessions, t.hour_sessions) as hour_sessions,
        marts.add_counts(v.weekday_sessions, t.weekday_sessions) as weekday_sessions,
        -- the modes of the categories (of the hours and weekdays: the version's)
        case
            when t.new_categories = 1 then marts.mode_after_adding(
                v.top_category,
                v.category_sessions[array_position(v.categories, v.top_category)],
                t.new_category,
                coalesce(v.category_sessions[v.position], 0) + t.new_category_sessions
            )
            else v.top_category
        end as top_category,
        case
            when t.new_categories = 1 and t.new_category_purchases > 0
                then marts.mode_after_adding(
                    v.favourite_category,
                    v.category_purchases[array_position(v.categories, v.favourite_category)],
                    t.new_category,
                    coalesce(v.category_purchases[v.position], 0) + t.new_category_purchases
                )
            else v.favourite_category
        end as favourite_category,
        v.favourite_hour,
        v.favourite_weekday,
        -- events
        v.events,
        v.view_events,
        v.sessions_with_cart_event,
        -- the number of new categories, for several_new_categories
        t.new_categories
    from changed as t
    left join lateral (
        select
            v.*,
            -- the one new category's place in the version's categories (NULL: not counted
            -- yet), computed once here, below the limit, and not at each of its uses
            array_position(v.categories, t.new_category) as position
        from intermediate.int_customer_feature_state as v
        where v.customer_id = t.customer_id
          and v.as_of_date between %(base_date)s::date and %(previous_date)s::date
        order by v.as_of_date desc
        limit 1
    ) as v on true
),

window_moves as (
    -- the versions' windows moved from their date to D
    select *
    from intermediate.int_customer_window_moves(
        %(base_date)s::date,
        %(previous_date)s::date,
        %(as_of_date)s::date,
        array(
            select (customer_id, version_date)::intermediate.customer_version
            from versions
            where version_date is not null
        )
    )
),

-- Several new categories: the version's counts unnested and added up with the new ones, the
-- modes as in the full build (int_customer_feature_state.sql). About one changed customer
-- in 15.
category_counts as (
    select customer_id, category, sum(sessions)::bigint as sessions,
        sum(purchases)::bigint as purchases
    from (
        select b.customer_id, c.category, c.sessions, c.purchases
        from versions as b
        cross join lateral unnest(b.categories, b.category_sessions, b.category_purchases)
            as c (category, sessions, purchases)
        where b.new_categories > 1
        union all
        select n.customer_id, n.category, n.sessions, n.purchases
        from new_category_counts as n
        join versions as b on b.customer_id = n.customer_id
        where b.new_categories > 1
    ) as counts
    group by customer_id, category
),

several_new_categories as (
    select
        c.customer_id,
        c.categories,
        c.category_sessions,
        c.category_purchases,
        top_rank.category as top_category,
        favourite_rank.category as favourite_category
    from (
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
    ) as c
    left join category_ranks as top_rank on top_rank.category_rank = c.top_category_rank
    left join category_ranks as favourite_rank
        on favourite_rank.category_rank = c.favourite_category_rank
),

new_carts as materialized (
    -- the sessions with a cart event in (P, D]
    select distinct customer_id, session_id
    from new_events
    where event_type = 'cart'
),

earlier_carts as (
    -- those sessions' cart events before P + 1 (a session across midnight), looked up by
    -- session alone through events_session_idx (with the customer in the lookup too, a
    -- BitmapAnd read each customer's events: 0.6 of 1.0 s at 1,000,000 customers)
    select customer_id, session_id
    from staging.stg_events
    where session_id = any (array(select session_id from new_carts))
      and event_type = 'cart'
      and event_time < %(previous_date)s::date + 1
),

new_cart_sessions as (
    -- sessions with a first cart event in (P, D]: one with an earlier cart event is counted
    -- already
    select n.customer_id, count(*) as sessions_with_cart_event
    from new_carts as n
    where not exists (
        select
        from earlier_carts as e
        where e.session_id = n.session_id
          and e.customer_id = n.customer_id
    )
    group by n.customer_id
),

rolled as (
    -- the changed customers: their latest version plus the new data
    select
        -- ids
        b.customer_id,
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
        -- trailing windows: the version's, moved from its date to D, plus the new sessions'
        coalesce(b.sessions_last_7d, 0) + coalesce(w.sessions_last_7d, 0)
            + coalesce(s.sessions_last_7d, 0) as sessions_last_7d,
        coalesce(b.sessions_last_30d, 0) + coalesce(w.sessions_last_30d, 0)
            + coalesce(s.sessions_last_30d, 0) as sessions_last_30d,
        coalesce(b.sessions_last_90d, 0) + coalesce(w.sessions_last_90d, 0)
            + coalesce(s.sessions_last_90d, 0) as sessions_last_90d,
        coalesce(b.purchases_last_7d, 0) + coalesce(w.purchases_last_7d, 0)
            + coalesce(s.purchases_last_7d, 0) as purchases_last_7d,
        coalesce(b.purchases_last_30d, 0) + coalesce(w.purchases_last_30d, 0)
            + coalesce(s.purchases_last_30d, 0) as purchases_last_30d,
        coalesce(b.purchases_last_90d, 0) + coalesce(w.purchases_last_90d, 0)
            + coalesce(s.purchases_last_90d, 0) as purchases_last_90d,
        coalesce(b.monetary_last_30d, 0) + coalesce(w.monetary_last_30d, 0)
            + coalesce(s.monetary_last_30d, 0) as monetary_last_30d,
        coalesce(b.monetary_last_365d, 0) + coalesce(w.monetary_last_365d, 0)
            + coalesce(s.monetary_last_365d, 0) as monetary_last_365d,
        coalesce(b.sessions_prev_90d, 0) + coalesce(w.sessions_prev_90d, 0)
            + coalesce(s.sessions_prev_90d, 0) as sessions_prev_90d,
        coalesce(b.monetary_prev_90d, 0) + coalesce(w.monetary_prev_90d, 0)
            + coalesce(s.monetary_prev_90d, 0) as monetary_prev_90d,
        -- sessions per value
        case when c.customer_id is null then b.categories else c.categories end as categories,
        case
            when c.customer_id is null then b.category_sessions else c.category_sessions
        end as category_sessions,
        case
            when c.customer_id is null then b.category_purchases else c.category_purchases
        end as category_purchases,
        b.hour_sessions,
        b.weekday_sessions,
        -- the modes
        case when c.customer_id is null then b.top_category else c.top_category end
            as top_category,
        case when c.customer_id is null then b.favourite_category else c.favourite_category end
            as favourite_category,
        case
            when s.customer_id is null then b.favourite_hour
            else marts.mode_position(b.hour_sessions) - 1
        end as favourite_hour,
        case
            when s.customer_id is null then b.favourite_weekday
            else marts.mode_position(b.weekday_sessions)
        end as favourite_weekday,
        -- events
        coalesce(b.events, 0) + coalesce(e.events, 0) as events,
        coalesce(b.view_events, 0) + coalesce(e.view_events, 0) as view_events,
        coalesce(b.sessions_with_cart_event, 0) + coalesce(cs.sessions_with_cart_event, 0)
            as sessions_with_cart_event
    from versions as b
    left join session_totals as s on s.customer_id = b.customer_id
    left join window_moves as w
        on w.customer_id = b.customer_id
        and w.version_date = b.version_date
    left join several_new_categories as c on c.customer_id = b.customer_id
    left join event_totals as e on e.customer_id = b.customer_id
    left join new_cart_sessions as cs on cs.customer_id = b.customer_id
),

final as (
    select * from rolled
)

select * from final
