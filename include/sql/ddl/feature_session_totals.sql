-- intermediate.int_customer_session_totals(after_date, through_date): per customer, every
-- count and sum that the feature state takes from the sessions dated in (after_date,
-- through_date], in one pass: frequency and money, the totals behind the averages, the
-- trailing windows at through_date, and the sessions per hour and weekday. The full build
-- reads it over the whole history (after_date -infinity), the roll-forward over the new days
-- (it moves the windows by itself and reads only the other columns). A SQL function of one
-- SELECT, stable and not strict, so that PostgreSQL inlines it into the calling query as a
-- subquery: the aggregation then runs in parallel as if written there. Its row type carries
-- the "C" collation of core's ids, which an inlined function's declared columns would lose.
-- Created by features.ensure_feature_models once the views it reads exist.

drop function if exists intermediate.int_customer_session_totals(date, date);
drop type if exists intermediate.customer_session_totals;

create type intermediate.customer_session_totals as (
    -- ids
    customer_id                    text collate "C",
    -- frequency and money
    sessions_count                 bigint,
    frequency                      bigint,
    monetary                       numeric,
    last_purchase_date             date,
    last_session_date              date,
    -- totals behind the averages
    browsing_time_sec_sum          numeric,
    browsing_time_sec_known        bigint,
    pages_viewed_sum               bigint,
    pages_viewed_known             bigint,
    added_to_cart_sum              bigint,
    added_to_cart_known            bigint,
    purchases_with_discount        bigint,
    purchases_with_discount_known  bigint,
    weekend_sessions               bigint,
    -- trailing windows at through_date
    sessions_last_7d               bigint,
    sessions_last_30d              bigint,
    sessions_last_90d              bigint,
    purchases_last_7d              bigint,
    purchases_last_30d             bigint,
    purchases_last_90d             bigint,
    monetary_last_30d              numeric,
    monetary_last_365d             numeric,
    sessions_prev_90d              bigint,
    monetary_prev_90d              numeric,
    -- sessions per hour and per ISO weekday
    hour_sessions                  bigint[],
    weekday_sessions               bigint[]
);

create function intermediate.int_customer_session_totals(after_date date, through_date date)
returns setof intermediate.customer_session_totals
language sql
stable
parallel safe
as $$
select
    customer_id,
    -- frequency and money
    count(*) as sessions_count,
    count(*) filter (where purchase_made) as frequency,
    coalesce(sum(purchase_amount) filter (where purchase_made), 0) as monetary,
    max(session_date) filter (where purchase_made) as last_purchase_date,
    max(session_date) as last_session_date,
    -- totals behind the averages
    -- summed exactly in whole microseconds (a bigint sum), then back to seconds: the values
    -- have at most 6 decimals (docs/features.md), and the reference sums them so too; a
    -- numeric cast of every value cost about four times as much (docs/benchmarks.md)
    coalesce(sum(round(browsing_time_sec * 1000000)::bigint) * 0.000001, 0)
        as browsing_time_sec_sum,
    count(browsing_time_sec) as browsing_time_sec_known,
    coalesce(sum(pages_viewed), 0) as pages_viewed_sum,
    count(pages_viewed) as pages_viewed_known,
    coalesce(sum(added_to_cart::integer), 0) as added_to_cart_sum,
    count(added_to_cart) as added_to_cart_known,
    count(*) filter (where purchase_made and discount_amount > 0) as purchases_with_discount,
    count(discount_amount) filter (where purchase_made) as purchases_with_discount_known,
    count(*) filter (where session_weekday >= 6) as weekend_sessions,
    -- trailing windows: (through_date - n, through_date] holds n days
    count(*) filter (where session_date > through_date - 7) as sessions_last_7d,
    count(*) filter (where session_date > through_date - 30) as sessions_last_30d,
    count(*) filter (where session_date > through_date - 90) as sessions_last_90d,
    count(*) filter (
        where purchase_made and session_date > through_date - 7
    ) as purchases_last_7d,
    count(*) filter (
        where purchase_made and session_date > through_date - 30
    ) as purchases_last_30d,
    count(*) filter (
        where purchase_made and session_date > through_date - 90
    ) as purchases_last_90d,
    coalesce(sum(purchase_amount) filter (
        where purchase_made and session_date > through_date - 30
    ), 0) as monetary_last_30d,
    coalesce(sum(purchase_amount) filter (
        where purchase_made and session_date > through_date - 365
    ), 0) as monetary_last_365d,
    -- the 90 days before the last 30: (through_date - 120, through_date - 30]
    count(*) filter (
        where session_date > through_date - 120
          and session_date <= through_date - 30
    ) as sessions_prev_90d,
    coalesce(sum(purchase_amount) filter (
        where purchase_made
          and session_date > through_date - 120
          and session_date <= through_date - 30
    ), 0) as monetary_prev_90d,
    -- sessions per hour (element h + 1 for hour h) and per ISO weekday (element d)
    array[
        count(*) filter (where session_hour = 0),
        count(*) filter (where session_hour = 1),
        count(*) filter (where session_hour = 2),
        count(*) filter (where session_hour = 3),
        count(*) filter (where session_hour = 4),
        count(*) filter (where session_hour = 5),
        count(*) filter (where session_hour = 6),
        count(*) filter (where session_hour = 7),
        count(*) filter (where session_hour = 8),
        count(*) filter (where session_hour = 9),
        count(*) filter (where session_hour = 10),
        count(*) filter (where session_hour = 11),
        count(*) filter (where session_hour = 12),
        count(*) filter (where session_hour = 13),
        count(*) filter (where session_hour = 14),
        count(*) filter (where session_hour = 15),
        count(*) filter (where session_hour = 16),
        count(*) filter (where session_hour = 17),
        count(*) filter (where session_hour = 18),
        count(*) filter (where session_hour = 19),
        count(*) filter (where session_hour = 20),
        count(*) filter (where session_hour = 21),
        count(*) filter (where session_hour = 22),
        count(*) filter (where session_hour = 23)
    ] as hour_sessions,
    array[
        count(*) filter (where session_weekday = 1),
        count(*) filter (where session_weekday = 2),
        count(*) filter (where session_weekday = 3),
        count(*) filter (where session_weekday = 4),
        count(*) filter (where session_weekday = 5),
        count(*) filter (where session_weekday = 6),
        count(*) filter (where session_weekday = 7)
    ] as weekday_sessions
from intermediate.int_sessions_enriched
where session_date > after_date
  and session_date <= through_date
group by customer_id
$$;
