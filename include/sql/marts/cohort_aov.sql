-- marts.cohort_aov: one row per as-of date, kind of cohort and cohort: what its customers
-- bought up to the as-of date. Three kinds of cohort:
--   signup_month         the month of the customer's signup ('2024-03')
--   acquisition_channel  the channel that brought the customer ('(unknown)' when not given)
--   favourite_category   the category the customer viewed most up to the as-of date, ties to
--                        the first by name ('(unknown)' without categorised views)
-- Totals favour cohorts that have had longer to buy; horizon_revenue_per_customer compares
-- cohorts fairly: revenue in the first %(cohort_horizon_days)s days after signup, over the
-- customers whose whole horizon lies before the as-of date (mature_customers).
-- Reads int_cohort_customer_days, materialised for the as-of date by ecom_insights.analytics.

with

customers as (
    select * from core.customers
    where signup_date <= %(as_of_date)s
),

customer_days as (
    select * from int_cohort_customer_days
    where activity_date <= %(as_of_date)s
),

category_views as (
    select customer_id, category, sum(sessions) as views
    from customer_days
    where category is not null
    group by customer_id, category
),

favourite_categories as (
    select distinct on (customer_id) customer_id, category as favourite_category
    from category_views
    order by customer_id, views desc, category
),

customer_totals as (
    select
        customers.customer_id,
        sum(customer_days.orders) as orders,
        sum(customer_days.revenue) as revenue,
        sum(customer_days.revenue) filter (
            where customer_days.activity_date
                < customers.signup_date + %(cohort_horizon_days)s
        ) as horizon_revenue
    from customers
    join customer_days on customer_days.customer_id = customers.customer_id
    group by customers.customer_id
),

cohort_customers as (
    select
        customers.customer_id,
        to_char(customers.signup_date, 'YYYY-MM') as signup_month,
        coalesce(customers.acquisition_channel, '(unknown)') as acquisition_channel,
        coalesce(favourite_categories.favourite_category, '(unknown)') as favourite_category,
        coalesce(customer_totals.orders, 0) as orders,
        coalesce(customer_totals.revenue, 0) as revenue,
        coalesce(customer_totals.horizon_revenue, 0) as horizon_revenue,
        customers.signup_date + %(cohort_horizon_days)s - 1 <= %(as_of_date)s as is_mature
    from customers
    left join customer_totals on customer_totals.customer_id = customers.customer_id
    left join favourite_categories
        on favourite_categories.customer_id = customers.customer_id
),

cohort_members as (
    select cohorts.cohort_kind, cohorts.cohort, cohort_customers.*
    from cohort_customers
    cross join lateral (
        values
            ('signup_month', cohort_customers.signup_month),
            ('acquisition_channel', cohort_customers.acquisition_channel),
            ('favourite_category', cohort_customers.favourite_category)
    ) as cohorts (cohort_kind, cohort)
),

cohorts as (
    select
        cohort_kind,
        cohort,
        count(*) as customers,
        count(*) filter (where orders > 0) as buyers,
        count(*) filter (where orders > 1) as repeat_buyers,
        sum(orders)::bigint as orders,
        sum(revenue) as revenue,
        count(*) filter (where is_mature) as mature_customers,
        sum(horizon_revenue) filter (where is_mature) as mature_horizon_revenue
    from cohort_members
    group by cohort_kind, cohort
),

rates as (
    select
        cohorts.*,
        repeat_buyers::float8 / nullif(buyers, 0) as repeat_rate,
        nullif(buyers, 0)::float8 as n,
        %(z)s::float8 as z
    from cohorts
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        cohort_kind,
        cohort,
        -- size
        customers,
        buyers,
        -- volume and money
        orders,
        revenue,
        revenue / nullif(orders, 0) as average_order_value,
        orders::float8 / customers as orders_per_customer,
        revenue / customers as revenue_per_customer,
        -- repeat buying, with its Wilson interval
        repeat_buyers,
        repeat_rate,
        (repeat_rate + z ^ 2 / (2 * n)
            - z * sqrt(repeat_rate * (1 - repeat_rate) / n + z ^ 2 / (4 * n ^ 2)))
            / (1 + z ^ 2 / n) as repeat_rate_lower,
        (repeat_rate + z ^ 2 / (2 * n)
            + z * sqrt(repeat_rate * (1 - repeat_rate) / n + z ^ 2 / (4 * n ^ 2)))
            / (1 + z ^ 2 / n) as repeat_rate_upper,
        -- a fixed horizon after signup, comparable across cohorts
        %(cohort_horizon_days)s as horizon_days,
        mature_customers,
        mature_horizon_revenue / nullif(mature_customers, 0) as horizon_revenue_per_customer,
        -- ranks within the kind of cohort
        rank() over (partition by cohort_kind order by revenue desc) as revenue_rank,
        rank() over (
            partition by cohort_kind
            order by mature_horizon_revenue / nullif(mature_customers, 0) desc nulls last
        ) as horizon_revenue_per_customer_rank,
        rank() over (partition by cohort_kind order by revenue desc) <= %(top_cohorts)s
            as is_top_revenue_cohort
    from rates
)

select * from final
