-- Functions shared by the full build and the roll-forward of marts.customer_features, so
-- that both compute the derived columns in one way. Idempotent. Each is parallel safe: a
-- query that calls a function not marked so never runs in parallel.

create schema if not exists intermediate;
create schema if not exists marts;

-- the recency bucket of a number of days since the last purchase (NULL: never purchased)
create or replace function marts.recency_bucket(days integer)
returns text
language sql
immutable
parallel safe
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
parallel safe
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
parallel safe
as $$
    select case
        when extract(month from day) in (12, 1, 2) then 'winter'
        when extract(month from day) in (3, 4, 5) then 'spring'
        when extract(month from day) in (6, 7, 8) then 'summer'
        else 'autumn'
    end
$$;

-- The roll-forward reads the sessions of a few days (those that cross a trailing window's
-- edge) for their customer, purchase and amount: from this index alone, without visiting
-- the table's pages, which for a day's sessions are spread over the whole table.
create index if not exists sessions_date_covering_idx
    on core.sessions (session_date) include (customer_id, purchase_made, purchase_amount);

-- The part (0 to parts - 1) that a customer falls in when the customers are split by a hash
-- of their id: the roll-forward computes the parts side by side. Inlined into the caller.
create or replace function marts.customer_part(customer_id text, parts integer)
returns integer
language sql
immutable
parallel safe
as $$
    select mod(hashtext(customer_id) & 2147483647, parts)
$$;

-- The position (1-based) of the largest of an hour's 24 counts or a weekday's 7, the first
-- one on a tie: the mode of an hour or a weekday from its counts. NULL for NULL counts. Plain
-- enough to be inlined into the query that calls it. The 7 counts have a branch of their
-- own: read as 24, the 17 subscripts past the end cost 0.6 of the time (26,000 rows: 59-72 ms
-- against 101-111 ms for both arrays).
create or replace function marts.mode_position(counts bigint[])
returns integer
language sql
immutable
parallel safe
as $$
    select array_position(counts, case
        when cardinality(counts) = 7 then greatest(
            counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7]
        )
        else greatest(
            counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
            counts[8], counts[9], counts[10], counts[11], counts[12], counts[13], counts[14],
            counts[15], counts[16], counts[17], counts[18], counts[19], counts[20], counts[21],
            counts[22], counts[23], counts[24]
        )
    end)
$$;

-- Two arrays of at most 24 counts added element by element; either may be NULL (nothing
-- counted). Written out element by element, without a subquery, so that it is inlined. A
-- weekday's 7 counts have a branch of their own: through the 24 elements and the slice they
-- took 2.2 times as long (26,000 rows: 96-140 ms against 41-43 ms).
create or replace function marts.add_counts(a bigint[], b bigint[])
returns bigint[]
language sql
immutable
parallel safe
as $$
    select case
        when a is null then b
        when b is null then a
        when cardinality(a) = 7 then array[
            a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], a[5] + b[5], a[6] + b[6],
            a[7] + b[7]
        ]
        else (array[
            a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], a[5] + b[5], a[6] + b[6],
            a[7] + b[7], a[8] + b[8], a[9] + b[9], a[10] + b[10], a[11] + b[11], a[12] + b[12],
            a[13] + b[13], a[14] + b[14], a[15] + b[15], a[16] + b[16], a[17] + b[17],
            a[18] + b[18], a[19] + b[19], a[20] + b[20], a[21] + b[21], a[22] + b[22],
            a[23] + b[23], a[24] + b[24]
        ])[1:cardinality(a)]
    end
$$;

-- An array of counts with `amount` added to its element number `element`, or appended as a
-- new element when `element` is NULL (a value not counted yet); `counts` may be NULL (nothing
-- counted). A day's new category in the roll-forward, counted in place.
create or replace function marts.add_at(counts bigint[], element integer, amount bigint)
returns bigint[]
language sql
immutable
parallel safe
as $$
    select case
        when element is null then coalesce(counts, '{}') || amount
        else counts[:element - 1] || (counts[element] + amount) || counts[element + 1:]
    end
$$;

-- The mode of a set of counts after one value's count grew to `value_count`, from the mode
-- before (`mode`, NULL when nothing was counted, with `mode_count`): no other count moved, so
-- it is the old mode or that value; a tie goes to the first in byte order, as the full build
-- picks. A day's new category in the roll-forward.
create or replace function marts.mode_after_adding(
    mode text, mode_count bigint, value text, value_count bigint
)
returns text
language sql
immutable
parallel safe
as $$
    select case
        when mode is null or mode = value then value
        when (value_count, mode collate "C") > (mode_count, value collate "C") then value
        else mode
    end
$$;

-- The additive state behind marts.customer_features: per customer, the counts and sums that
-- the features are ratios or picks of, as of a date. A day's roll-forward adds that day's
-- sessions and events to it instead of reading each changed customer's whole history.
-- Versioned: the partition for date V holds the rows written at V (every customer with data
-- for a full build, the changed customers for a roll-forward); a customer's state at D is
-- their latest version on or before D. Columns named as the features they feed.
create table if not exists intermediate.int_customer_feature_state (
    -- ids ("C", as core's: partitions are filled from core and must match to attach)
    customer_id                    text    collate "C" not null,
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
    -- the modes' inputs: sessions (and purchases) per category, as parallel arrays in any
    -- order; sessions per hour (24 elements, hour h at h + 1) and per ISO weekday (7)
    categories                     text[],
    category_sessions              bigint[],
    category_purchases             bigint[],
    hour_sessions                  bigint[],
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

-- The registry of the snapshots of marts.customer_features: a snapshot at D reads, per
-- customer, the latest state version in [base_date, D], where base_date is the full build
-- it chains from (a full build at D has base_date = D). The state partitions that no
-- registered snapshot reads are dropped.
create table if not exists marts.feature_snapshots (
    as_of_date            date        primary key,
    base_date             date        not null check (base_date <= as_of_date),
    mode                  text        not null check (mode in ('full', 'incremental')),
    -- the roll-forward's previous snapshot (NULL for a full build)
    previous_date         date,
    -- customers with a session, an event or a signup in (previous_date, as_of_date]
    recomputed_customers  integer     not null,
    built_at              timestamptz not null default now()
);

-- A state table created before core's ids were collate "C" (warehouse.sql converts core):
-- its customer_id too, partitions included, or the next partition built from core cannot
-- attach. (The marts.customer_features view that reads it is recreated by the feature code;
-- an older snapshot table of that name is dropped and rebuilt by the migration there.)
select core.collate_ids_in_c(to_regclass('intermediate.int_customer_feature_state'));
