-- Functions shared by the full build and the roll-forward of marts.customer_features, so
-- that both compute the derived columns in one way. Idempotent.

create schema if not exists intermediate;
create schema if not exists marts;

-- the recency bucket of a number of days since the last purchase (NULL: never purchased)
create or replace function marts.recency_bucket(days integer)
returns text
language sql
immutable
as $$
    select case
        when days is null then 'never'
        when days <= 7 then '0-7'
        when days <= 30 then '8-30'
        when days <= 90 then '31-90'
        when days <= 180 then '91-180'
        when days <= 365 then '181-365'
        else '365+'
    end
$$;

-- the last 30 days against the monthly average of the 90 days before (NULL when those are 0)
create or replace function marts.trend_ratio(last_30d numeric, previous_90d numeric)
returns numeric
language sql
immutable
as $$
    -- multiply first: dividing previous_90d by 3 first rounds it to 16 digits and can tip a
    -- tie (1 / (32/3) = 0.09375 must round to 0.0938)
    select round(last_30d * 3 / nullif(previous_90d, 0), 4)
$$;

-- the meteorological season of a day in the northern hemisphere
create or replace function marts.season(day date)
returns text
language sql
immutable
as $$
    select case
        when extract(month from day) in (12, 1, 2) then 'winter'
        when extract(month from day) in (3, 4, 5) then 'spring'
        when extract(month from day) in (6, 7, 8) then 'summer'
        else 'autumn'
    end
$$;

-- The additive state behind marts.customer_features: per customer, the counts and sums that
-- the features are ratios or picks of, as of a date. A day's roll-forward adds that day's
-- sessions and events to it instead of reading each changed customer's whole history.
-- Versioned: the partition for date V holds the rows written at V (every customer with data
-- for a full build, the changed customers for a roll-forward); a customer's state at D is
-- their latest version on or before D. Columns named as the features they feed.
create table if not exists intermediate.int_customer_feature_state (
    -- ids
    customer_id                    text    not null,
    as_of_date                     date    not null,
    -- frequency and money (all-time, up to as_of_date)
    sessions_count                 bigint  not null,
    frequency                      bigint  not null,
    monetary                       numeric not null,
    last_purchase_date             date,
    last_session_date              date,
    -- totals behind the averages: a sum and the number of values summed
    browsing_time_sec_sum          numeric not null,
    browsing_time_sec_known        bigint  not null,
    pages_viewed_sum               bigint  not null,
    pages_viewed_known             bigint  not null,
    added_to_cart_sum              bigint  not null,
    added_to_cart_known            bigint  not null,
    purchases_with_discount        bigint  not null,
    purchases_with_discount_known  bigint  not null,
    weekend_sessions               bigint  not null,
    -- trailing windows at as_of_date
    sessions_last_7d               bigint  not null,
    sessions_last_30d              bigint  not null,
    sessions_last_90d              bigint  not null,
    purchases_last_7d              bigint  not null,
    purchases_last_30d             bigint  not null,
    purchases_last_90d             bigint  not null,
    monetary_last_30d              numeric not null,
    monetary_last_365d             numeric not null,
    sessions_prev_90d              bigint  not null,
    monetary_prev_90d              numeric not null,
    -- sessions (and purchases) per value, the modes' inputs: parallel arrays, any order
    categories                     text[],
    category_sessions              bigint[],
    category_purchases             bigint[],
    hours                          integer[],
    hour_sessions                  bigint[],
    weekdays                       integer[],
    weekday_sessions               bigint[],
    -- the modes (NULL without a value to count)
    top_category                   text,
    favourite_category             text,
    favourite_hour                 integer,
    favourite_weekday              integer,
    -- events (0 without any)
    events                         bigint  not null,
    view_events                    bigint  not null,
    sessions_with_cart_event       bigint  not null,
    primary key (customer_id, as_of_date)
) partition by list (as_of_date);
