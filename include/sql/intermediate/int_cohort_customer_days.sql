-- int_cohort_customer_days: one row per customer, day and category of the product viewed,
-- with the customer's sessions, orders and revenue there. The cohort marts add up a
-- customer's history and find the category they view most (their product interest).
-- sessions.product_viewed may hold a product's id or its name (a name that two products share
-- is left unresolved); category is NULL when the product is unknown.
-- Free of parameters: callers filter on activity_date (pushed below the aggregation).

with

sessions as (
    select * from core.sessions
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

categorised as (
    select
        sessions.customer_id,
        sessions.session_date,
        sessions.purchase_made,
        sessions.purchase_amount,
        coalesce(by_id.category, named.category) as category
    from sessions
    left join products as by_id on by_id.product_id = sessions.product_viewed
    left join product_names as by_name on by_name.product_name = sessions.product_viewed
    left join products as named on named.product_id = by_name.product_id
),

final as (
    select
        -- ids
        customer_id,
        -- time
        session_date as activity_date,
        -- interest
        category,
        -- volume
        count(*) as sessions,
        count(*) filter (where purchase_made) as orders,
        -- money
        sum(purchase_amount) as revenue
    from categorised
    group by customer_id, session_date, category
)

select * from final
