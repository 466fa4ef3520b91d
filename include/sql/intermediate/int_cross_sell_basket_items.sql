-- int_cross_sell_basket_items: the baskets behind the cross-sell rules of an as-of date, one
-- row per rule kind, basket and product that passes the rules' floor on its own, with the
-- side(s) of a rule it can stand on and the counts the rule metrics need.
--   co_purchase  basket: an order (a session with a purchase); items: the products bought
--   co_view      basket: a session; items: the products it has a view event of
--   sequence     basket: an order whose next %(sequence_window_days)s days lie before the
--                as-of date; antecedents: its products; consequents: the products the same
--                customer bought on a later day within those days
-- Baskets are those of the window [%(cross_sell_start)s, %(as_of_date)s].
-- Floor: a pair must be in at least %(min_pair_count)s baskets and a share %(min_support)s of
-- them; a product below that count on one side cannot be in such a pair on that side, so it
-- is dropped here (the Apriori principle), and the pair join reads only what can pass.
-- Reads int_product_funnel_sessions, materialised for the as-of date by
-- ecom_insights.analytics, which materialises this model in turn (analysed, so that the pair
-- join of cross_sell_rules is planned on real row counts).

with

funnel_sessions as (
    select * from int_product_funnel_sessions
    where activity_date between %(cross_sell_start)s and %(as_of_date)s
),

-- one row per session and product; a session crossing midnight dates from its first day
session_products as (
    select
        session_id,
        customer_id,
        product_id,
        min(activity_date) as activity_date,
        bool_or(reached_purchase) as reached_purchase,
        bool_or(has_view_event) as has_view_event
    from funnel_sessions
    group by session_id, customer_id, product_id
),

order_items as (
    select session_id as order_id, customer_id, product_id, activity_date
    from session_products
    where reached_purchase
),

orders as (
    select order_id, customer_id, min(activity_date) as order_date
    from order_items
    group by order_id, customer_id
),

-- orders whose whole follow-up window is observed by the as-of date
followed_orders as (
    select * from orders
    where order_date <= %(as_of_date)s::date - %(sequence_window_days)s
),

later_items as (
    select distinct followed_orders.order_id, later_order_items.product_id
    from followed_orders
    join orders as later_orders
        on later_orders.customer_id = followed_orders.customer_id
        and later_orders.order_date > followed_orders.order_date
        and later_orders.order_date <= followed_orders.order_date + %(sequence_window_days)s
    join order_items as later_order_items on later_order_items.order_id = later_orders.order_id
),

followed_items as (
    select order_items.order_id, order_items.product_id
    from order_items
    join followed_orders on followed_orders.order_id = order_items.order_id
),

baskets as (
    select
        'co_purchase' as rule_kind,
        order_id as basket_id,
        product_id,
        true as is_antecedent,
        true as is_consequent
    from order_items
    union all
    select 'co_view', session_id, product_id, true, true
    from session_products
    where has_view_event
    union all
    select
        'sequence',
        coalesce(followed_items.order_id, later_items.order_id),
        coalesce(followed_items.product_id, later_items.product_id),
        followed_items.order_id is not null,
        later_items.order_id is not null
    from followed_items
    full join later_items
        on later_items.order_id = followed_items.order_id
        and later_items.product_id = followed_items.product_id
),

basket_counts as (
    select
        rule_kind,
        count(distinct basket_id) as baskets,
        -- the floor as a count: support >= min_support and count >= min_pair_count
        greatest(%(min_pair_count)s, ceil(%(min_support)s * count(distinct basket_id)))::bigint
            as min_count
    from baskets
    group by rule_kind
),

antecedent_counts as (
    select rule_kind, product_id, count(*) as antecedent_count
    from baskets
    where is_antecedent
    group by rule_kind, product_id
),

consequent_counts as (
    select rule_kind, product_id, count(*) as consequent_count
    from baskets
    where is_consequent
    group by rule_kind, product_id
),

sided as (
    select
        baskets.rule_kind,
        baskets.basket_id,
        baskets.product_id,
        baskets.is_antecedent
            and antecedent_counts.antecedent_count >= basket_counts.min_count as is_antecedent,
        baskets.is_consequent
            and consequent_counts.consequent_count >= basket_counts.min_count as is_consequent,
        antecedent_counts.antecedent_count,
        consequent_counts.consequent_count,
        basket_counts.baskets,
        basket_counts.min_count
    from baskets
    join basket_counts on basket_counts.rule_kind = baskets.rule_kind
    left join antecedent_counts
        on antecedent_counts.rule_kind = baskets.rule_kind
        and antecedent_counts.product_id = baskets.product_id
    left join consequent_counts
        on consequent_counts.rule_kind = baskets.rule_kind
        and consequent_counts.product_id = baskets.product_id
),

final as (
    select * from sided
    where is_antecedent or is_consequent
)

select * from final
