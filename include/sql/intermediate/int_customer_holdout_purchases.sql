-- int_customer_holdout_purchases: per customer, the purchase days and spend in the holdout
-- window (as_of_date, holdout_end], counted as int_customer_purchase_summary counts them
-- (several purchases on one day are one purchase day). Customers without a purchase there
-- have no row.
-- Bound parameters: as_of_date, holdout_end.

with

sessions as (
    select * from core.sessions
),

holdout as (
    select customer_id, session_date, purchase_amount
    from sessions
    where purchase_made
        and session_date > %(as_of_date)s
        and session_date <= %(holdout_end)s
),

final as (
    select
        -- ids
        customer_id,
        -- volume
        count(distinct session_date) as actual_purchases,
        -- money
        sum(purchase_amount) as actual_value
    from holdout
    group by customer_id
)

select * from final
