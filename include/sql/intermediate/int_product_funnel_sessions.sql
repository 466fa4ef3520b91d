-- int_product_funnel_sessions: one row per session, product and day on which the session
-- touched the product, with the furthest funnel step it reached there.
--
-- Two sources, told apart by funnel_source:
--   'events'   core.events: a view, cart (or remove_from_cart) or purchase event of the product;
--   'sessions' core.sessions alone: the session's product_viewed, with its added_to_cart and
--              purchase_made flags (one product per session; used when there are no events).
-- A later step implies the earlier ones (a purchase without a logged view still counts as
-- viewed), so that views >= carts >= purchases and every rate is a proportion;
-- has_view_event says whether the product was really viewed (co-view rules use it).
-- sessions.product_viewed may hold a product's id or its name (a name that two products share
-- is left unresolved). Free of parameters: callers filter on activity_date and funnel_source,
-- which PostgreSQL pushes below the aggregation (ecom_insights.analytics does so for an as-of
-- date). A session that crosses midnight gives one row per day.

with

events as (
    select * from core.events
),

sessions as (
    select * from core.sessions
),

products as (
    select * from core.products
),

-- a product named in sessions.product_viewed: by id, else by a name no other product has
product_names as (
    select product_name, min(product_id) as product_id
    from products
    where product_name is not null
    group by product_name
    having count(*) = 1
),

event_steps as (
    select
        -- ids
        'events' as funnel_source,
        session_id,
        customer_id,
        product_id,
        -- time
        event_time::date as activity_date,
        -- funnel
        true as reached_view,
        bool_or(event_type in ('cart', 'remove_from_cart', 'purchase')) as reached_cart,
        bool_or(event_type = 'purchase') as reached_purchase,
        bool_or(event_type = 'view') as has_view_event
    from events
    group by session_id, customer_id, product_id, event_time::date
),

session_steps as (
    select
        -- ids
        'sessions' as funnel_source,
        sessions.session_id,
        sessions.customer_id,
        coalesce(by_id.product_id, by_name.product_id, sessions.product_viewed) as product_id,
        -- time
        sessions.session_date as activity_date,
        -- funnel
        true as reached_view,
        coalesce(sessions.added_to_cart, false) or sessions.purchase_made as reached_cart,
        sessions.purchase_made as reached_purchase,
        true as has_view_event
    from sessions
    left join products as by_id on by_id.product_id = sessions.product_viewed
    left join product_names as by_name on by_name.product_name = sessions.product_viewed
    where sessions.product_viewed is not null
),

final as (
    select * from event_steps
    union all
    select * from session_steps
)

select * from final
