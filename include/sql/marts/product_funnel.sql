-- marts.product_funnel: one row per as-of date, ISO week and product, and per week and
-- category: views, add-to-carts and purchases, and the rates between the steps.
-- Counts are sessions, not events: a session that viewed a product three times is one view,
-- so every rate is a proportion of sessions. The funnel comes from core.events when there are
-- events up to the as-of date, else from the sessions' own product_viewed, added_to_cart and
-- purchase_made (funnel_source says which).
-- Reads int_product_funnel_sessions, materialised for the as-of date by
-- ecom_insights.analytics; keeps the last %(funnel_weeks)s weeks, the as-of week included
-- (is_partial_week when it ends after the as-of date).

with

funnel_sessions as (
    select * from int_product_funnel_sessions
    where activity_date between %(funnel_start)s and %(as_of_date)s
),

products as (
    select * from core.products
),

-- a session crossing midnight counts once per product, in the week of its first day
session_products as (
    select
        funnel_source,
        session_id,
        product_id,
        min(activity_date) as activity_date,
        bool_or(reached_cart) as reached_cart,
        bool_or(reached_purchase) as reached_purchase
    from funnel_sessions
    group by funnel_source, session_id, product_id
),

product_weeks as (
    select
        session_products.funnel_source,
        date_trunc('week', session_products.activity_date)::date as week_start,
        session_products.product_id,
        products.product_name,
        products.category,
        count(*) as views,
        count(*) filter (where session_products.reached_cart) as carts,
        count(*) filter (where session_products.reached_purchase) as purchases
    from session_products
    left join products on products.product_id = session_products.product_id
    group by 1, 2, 3, 4, 5
),

category_weeks as (
    select
        funnel_source,
        week_start,
        null::text as product_id,
        null::text as product_name,
        category,
        sum(views)::bigint as views,
        sum(carts)::bigint as carts,
        sum(purchases)::bigint as purchases
    from product_weeks
    group by funnel_source, week_start, category
),

funnel_rows as (
    select 'product' as level, * from product_weeks
    union all
    select 'category' as level, * from category_weeks
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        funnel_source,
        level,
        week_start,
        week_start + 6 > %(as_of_date)s::date as is_partial_week,
        category,
        product_id,
        product_name,
        -- funnel counts (sessions)
        views,
        carts,
        purchases,
        -- rates
        carts::float8 / nullif(views, 0) as view_to_cart_rate,
        purchases::float8 / nullif(carts, 0) as cart_to_purchase_rate,
        purchases::float8 / nullif(views, 0) as view_to_purchase_rate
    from funnel_rows
)

select * from final
