-- int_customer_purchase_summary: the buy-till-you-die summary of every customer with at least
-- one purchase on or before the as-of date, in days, with lifetimes' definitions
-- (lifetimes.utils.summary_data_from_transaction_data with freq='D'):
--   frequency       repeat purchase days: days with a purchase, after the first
--   recency_days    days from the first purchase day to the last
--   t_days          days from the first purchase day to the as-of date
--   monetary_value  mean spend of the repeat purchase days (a day's purchases added up);
--                   0 when there is no repeat purchase day
-- Several purchases on one day are one purchase day: the models count days, not orders.
-- Bound parameter: as_of_date.

with

sessions as (
    select * from core.sessions
),

purchase_days as (
    select
        customer_id,
        session_date as purchase_date,
        sum(purchase_amount) as purchase_value
    from sessions
    where purchase_made
        and session_date <= %(as_of_date)s
    group by customer_id, session_date
),

with_first_day as (
    select
        *,
        min(purchase_date) over (partition by customer_id) as first_purchase_date
    from purchase_days
),

final as (
    select
        -- ids
        customer_id,
        -- dates
        min(purchase_date) as first_purchase_date,
        max(purchase_date) as last_purchase_date,
        -- frequency and recency
        count(*) - 1 as frequency,
        max(purchase_date) - min(purchase_date) as recency_days,
        %(as_of_date)s::date - min(purchase_date) as t_days,
        -- money
        coalesce(
            avg(purchase_value) filter (where purchase_date > first_purchase_date), 0
        ) as monetary_value
    from with_first_day
    group by customer_id
)

select * from final
