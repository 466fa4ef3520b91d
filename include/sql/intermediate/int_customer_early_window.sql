-- int_customer_early_window: one row per customer whose early window is over by the as-of
-- date: what they did in their first early_window_days after signup (the days
-- [signup_date, signup_date + early_window_days), 30 by default), and the label: their value
-- (sum of purchase_amount) over the following horizon_days
-- [signup_date + early_window_days, signup_date + early_window_days + horizon_days).
--
-- Point in time at the as-of date D (data up to the end of D):
-- - a customer is here only when the last day of their early window is on or before D, so
--   that no feature depends on when it is computed; no feature reads a day after the window;
-- - is_labelled: the last day of the label window is on or before D; future_value and
--   is_top_value are NULL otherwise (never a zero that has not been observed yet);
-- - is_top_value: future_value at or above the (1 - top_share) quantile of the labelled
--   customers' values, and above zero (a shop where most customers buy nothing again has no
--   "top" among the zeros).
-- sessions.product_viewed may hold a product's id or its name (a name that two products share
-- is left unresolved); the category is NULL when the product is unknown.
-- Bound parameters: as_of_date, early_window_days, horizon_days, top_share, signups_from.

with

customers as (
    select * from core.customers
),

sessions as (
    select * from core.sessions
),

events as (
    select * from core.events
),

products as (
    select * from core.products
),

product_names as (
    select product_name, min(product_id) as product_id
    from products
    where product_name is not null
    group by product_name
    having count(*) = 1
),

windows as (
    select
        customer_id,
        signup_date,
        (signup_date + %(early_window_days)s::integer) as early_window_end,
        (signup_date + %(early_window_days)s::integer + %(horizon_days)s::integer)
            as label_window_end,
        age,
        gender,
        location,
        acquisition_channel
    from customers
    -- the early window's last day is on or before the as-of date
    where signup_date + %(early_window_days)s::integer - 1 <= %(as_of_date)s::date
      -- signups before signups_from are left out: in an export without signup dates, the
      -- first weeks' "signups" are mostly old customers seen for the first time
      and signup_date >= %(signups_from)s::date
),

early_sessions as (
    select
        sessions.*,
        windows.signup_date,
        coalesce(by_id.category, named.category) as category,
        sessions.session_date - windows.signup_date as days_since_signup
    from sessions
    inner join windows on windows.customer_id = sessions.customer_id
    left join products as by_id on by_id.product_id = sessions.product_viewed
    left join product_names as by_name on by_name.product_name = sessions.product_viewed
    left join products as named on named.product_id = by_name.product_id
    where sessions.session_date >= windows.signup_date
      and sessions.session_date < windows.early_window_end
),

early_events as (
    select
        events.customer_id,
        events.event_type,
        products.category
    from events
    inner join windows on windows.customer_id = events.customer_id
    left join products on products.product_id = events.product_id
    where events.event_time >= windows.signup_date
      and events.event_time < windows.early_window_end
),

first_purchases as (
    select distinct on (customer_id)
        customer_id,
        days_since_signup as days_to_first_purchase,
        purchase_amount as first_purchase_amount
    from early_sessions
    where purchase_made
    order by customer_id, session_started_at, session_id
),

session_features as (
    select
        customer_id,
        -- volume
        count(*) as sessions,
        count(distinct session_date) as active_days,
        count(*) filter (where days_since_signup < 7) as sessions_first_7_days,
        count(*) filter (where purchase_made) as purchases,
        -- money
        sum(purchase_amount) as spend,
        max(purchase_amount) as max_purchase_amount,
        sum(coalesce(discount_amount, 0)) filter (where purchase_made) as discount_amount,
        count(*) filter (where purchase_made and discount_amount > 0) as discounted_purchases,
        -- engagement
        sum(browsing_time_sec) as browsing_time_sec,
        avg(browsing_time_sec) as mean_browsing_time_sec,
        sum(pages_viewed) as pages_viewed,
        avg(pages_viewed) as mean_pages_viewed,
        count(*) filter (where added_to_cart) as cart_sessions,
        count(distinct category) as categories_viewed,
        -- context
        avg(case when device = 'mobile' then 1.0 when device is not null then 0.0 end)
            as mobile_session_share,
        avg(case when campaign_id is not null then 1.0 else 0.0 end) as campaign_session_share
    from early_sessions
    group by customer_id
),

event_features as (
    select
        customer_id,
        count(*) filter (where event_type = 'view') as view_events,
        count(*) filter (where event_type = 'cart') as cart_events,
        count(*) filter (where event_type = 'purchase') as items_purchased,
        count(distinct category) filter (where event_type = 'purchase') as categories_purchased
    from early_events
    group by customer_id
),

later_value as (
    select
        sessions.customer_id,
        sum(sessions.purchase_amount) as future_value
    from sessions
    inner join windows on windows.customer_id = sessions.customer_id
    where sessions.session_date >= windows.early_window_end
      and sessions.session_date < windows.label_window_end
      and windows.label_window_end - 1 <= %(as_of_date)s::date
    group by sessions.customer_id
),

labelled as (
    select
        windows.customer_id,
        windows.label_window_end - 1 <= %(as_of_date)s::date as is_labelled,
        case
            when windows.label_window_end - 1 <= %(as_of_date)s::date
                then coalesce(later_value.future_value, 0)
        end as future_value
    from windows
    left join later_value on later_value.customer_id = windows.customer_id
),

threshold as (
    select
        percentile_cont(1 - %(top_share)s::double precision) within group (
            order by future_value
        ) as top_value_threshold
    from labelled
    where is_labelled
),

final as (
    select
        -- ids
        windows.customer_id,
        -- time
        windows.signup_date,
        windows.early_window_end,
        windows.label_window_end,
        -- profile
        windows.age,
        windows.gender,
        windows.location,
        windows.acquisition_channel,
        -- volume
        coalesce(session_features.sessions, 0) as sessions,
        coalesce(session_features.active_days, 0) as active_days,
        coalesce(session_features.sessions_first_7_days, 0) as sessions_first_7_days,
        coalesce(session_features.purchases, 0) as purchases,
        coalesce(session_features.purchases, 0)::double precision
            / nullif(session_features.sessions, 0) as purchase_rate,
        -- money
        coalesce(session_features.spend, 0)::double precision as spend,
        (session_features.spend / nullif(session_features.purchases, 0))::double precision
            as average_order_value,
        session_features.max_purchase_amount::double precision as max_purchase_amount,
        first_purchases.first_purchase_amount::double precision as first_purchase_amount,
        first_purchases.days_to_first_purchase,
        (
            session_features.discount_amount
            / nullif(session_features.spend + session_features.discount_amount, 0)
        )::double precision as discount_share,
        session_features.discounted_purchases::double precision
            / nullif(session_features.purchases, 0) as discounted_purchase_share,
        -- engagement
        session_features.browsing_time_sec::double precision as browsing_time_sec,
        session_features.mean_browsing_time_sec::double precision as mean_browsing_time_sec,
        session_features.pages_viewed,
        session_features.mean_pages_viewed::double precision as mean_pages_viewed,
        coalesce(session_features.cart_sessions, 0) as cart_sessions,
        coalesce(session_features.categories_viewed, 0) as categories_viewed,
        coalesce(event_features.view_events, 0) as view_events,
        coalesce(event_features.cart_events, 0) as cart_events,
        coalesce(event_features.items_purchased, 0) as items_purchased,
        coalesce(event_features.categories_purchased, 0) as categories_purchased,
        -- context
        session_features.mobile_session_share::double precision as mobile_session_share,
        session_features.campaign_session_share::double precision as campaign_session_share,
        -- label
        labelled.is_labelled,
        labelled.future_value::double precision as future_value,
        case
            when labelled.is_labelled
                then labelled.future_value > 0
                and labelled.future_value >= threshold.top_value_threshold
        end as is_top_value
    from windows
    inner join labelled on labelled.customer_id = windows.customer_id
    cross join threshold
    left join session_features on session_features.customer_id = windows.customer_id
    left join event_features on event_features.customer_id = windows.customer_id
    left join first_purchases on first_purchases.customer_id = windows.customer_id
)

select * from final
