-- marts.cohort_retention: the retention matrix per as-of date: for each cohort and each month
-- since signup, the share of its customers with a session (retention_rate) and with an order
-- (purchase_retention_rate) in that month. Cohorts as in marts.cohort_aov: signup_month,
-- acquisition_channel, favourite_category.
-- Months are calendar months: month 0 is the signup month, month 1 the next, and so on. Only
-- months that ended by the as-of date count, and only for the customers for whom that month
-- has ended (eligible_customers), so that a month still running never reads as churn.
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

cohort_customers as (
    select
        customers.customer_id,
        date_trunc('month', customers.signup_date)::date as signup_month_start,
        to_char(customers.signup_date, 'YYYY-MM') as signup_month,
        coalesce(customers.acquisition_channel, '(unknown)') as acquisition_channel,
        coalesce(favourite_categories.favourite_category, '(unknown)') as favourite_category
    from customers
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

-- customers per cohort and signup month, and the months since signup that have ended
cohort_sizes as (
    select cohort_kind, cohort, signup_month_start, count(*) as customers
    from cohort_members
    group by cohort_kind, cohort, signup_month_start
),

ended_months as (
    select
        cohort_sizes.*,
        months.months_since_signup
    from cohort_sizes
    cross join lateral generate_series(
        0,
        (
            (extract(year from %(as_of_date)s::date) - extract(year from signup_month_start))
                * 12
            + extract(month from %(as_of_date)s::date) - extract(month from signup_month_start)
        )::integer
    ) as months (months_since_signup)
    where (signup_month_start + (months.months_since_signup + 1) * interval '1 month')::date
        - 1 <= %(as_of_date)s::date
),

eligible as (
    select cohort_kind, cohort, months_since_signup, sum(customers)::bigint as eligible_customers
    from ended_months
    group by cohort_kind, cohort, months_since_signup
),

cohort_totals as (
    select cohort_kind, cohort, sum(customers)::bigint as cohort_customers
    from cohort_sizes
    group by cohort_kind, cohort
),

customer_months as (
    select
        customer_days.customer_id,
        (
            (extract(year from customer_days.activity_date)
                - extract(year from cohort_customers.signup_month_start)) * 12
            + extract(month from customer_days.activity_date)
            - extract(month from cohort_customers.signup_month_start)
        )::integer as months_since_signup,
        bool_or(customer_days.orders > 0) as purchased
    from customer_days
    join cohort_customers on cohort_customers.customer_id = customer_days.customer_id
    where customer_days.activity_date >= cohort_customers.signup_month_start
        -- the month has ended by the as-of date
        and (date_trunc('month', customer_days.activity_date) + interval '1 month')::date - 1
            <= %(as_of_date)s::date
    group by 1, 2
),

activity as (
    select
        cohort_members.cohort_kind,
        cohort_members.cohort,
        customer_months.months_since_signup,
        count(*) as active_customers,
        count(*) filter (where customer_months.purchased) as purchasing_customers
    from customer_months
    join cohort_members on cohort_members.customer_id = customer_months.customer_id
    group by 1, 2, 3
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        eligible.cohort_kind,
        eligible.cohort,
        eligible.months_since_signup,
        -- customers
        cohort_totals.cohort_customers,
        eligible.eligible_customers,
        coalesce(activity.active_customers, 0) as active_customers,
        coalesce(activity.purchasing_customers, 0) as purchasing_customers,
        -- rates
        coalesce(activity.active_customers, 0)::float8 / eligible.eligible_customers
            as retention_rate,
        coalesce(activity.purchasing_customers, 0)::float8 / eligible.eligible_customers
            as purchase_retention_rate
    from eligible
    join cohort_totals
        on cohort_totals.cohort_kind = eligible.cohort_kind
        and cohort_totals.cohort = eligible.cohort
    left join activity
        on activity.cohort_kind = eligible.cohort_kind
        and activity.cohort = eligible.cohort
        and activity.months_since_signup = eligible.months_since_signup
)

select * from final
