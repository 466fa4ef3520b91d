-- intermediate.int_customer_window_moves(base_date, through_date, target_date, versions): how
-- state versions' trailing windows move from their own date V to a later date D
-- (target_date), for each version V in [base_date, through_date] (V < D) of a customer with a
-- session that crosses a window edge in between. A version is written when a customer's data
-- moves, so a customer's latest version V <= D has no session in (V, D]: their windows at D
-- are those at V plus these moves, which count the sessions up to V inside each window at D
-- minus those inside it at V. Only a session dated in (V - e, D - e] for a window edge e (7,
-- 30, 90, 120 and 365 days back) can be inside one and not the other; those days are read
-- from sessions_date_covering_idx alone (an index-only scan), for (base_date - e, D - e].
-- The versions are every version of the state table in that range (versions NULL: the mart's
-- view, which moves each customer's latest version to the snapshot's date at read time) or
-- the (customer_id, version_date) pairs given (the roll-forward: its changed customers' base
-- versions, already read, instead of a probe of the state's key per edge session). Neither
-- writes a version for a customer whose only change is a session leaving a window. The
-- deltas are named as the state's window columns (ddl/features.sql).
-- Created by features.ensure_feature_models once the views and the state table exist; the
-- mart's view, which calls it, is dropped with it and created again there.

-- the types go with the function and the view
drop type if exists intermediate.customer_window_moves cascade;
drop type if exists intermediate.customer_version cascade;

create type intermediate.customer_version as (
    customer_id   text collate "C",
    version_date  date
);

create type intermediate.customer_window_moves as (
    -- ids
    customer_id         text collate "C",
    version_date        date,
    -- the windows at target_date minus those at version_date
    sessions_last_7d    bigint,
    sessions_last_30d   bigint,
    sessions_last_90d   bigint,
    purchases_last_7d   bigint,
    purchases_last_30d  bigint,
    purchases_last_90d  bigint,
    monetary_last_30d   numeric,
    monetary_last_365d  numeric,
    sessions_prev_90d   bigint,
    monetary_prev_90d   numeric
);

create function intermediate.int_customer_window_moves(
    base_date date,
    through_date date,
    target_date date,
    versions intermediate.customer_version[] default null
)
returns setof intermediate.customer_window_moves
language sql
stable
parallel safe
as $$
with

-- import
edge_sessions as (
    -- the sessions of the days (base_date - e, target_date - e], of every customer
    select customer_id, session_date, purchase_made, purchase_amount
    from staging.stg_sessions
    where session_date = any (array(
        select distinct day::date
        from unnest(array[7, 30, 90, 120, 365]) as edge
        cross join lateral generate_series(
            base_date - edge + 1, target_date - edge, interval '1 day'
        ) as day
    ))
),

state_versions as (
    -- the given versions, or every version in range (from the partitions' primary keys)
    select v.customer_id, v.version_date
    from unnest(versions) as v
    where versions is not null
      and v.version_date between base_date and least(through_date, target_date - 1)
    union all
    select customer_id, as_of_date as version_date
    from intermediate.int_customer_feature_state
    where versions is null
      and as_of_date between base_date and least(through_date, target_date - 1)
),

-- logic
final as (
    -- per window: the sessions up to V inside it at D, minus those inside it at V
    select
        v.customer_id,
        v.version_date,
        count(*) filter (where s.session_date > target_date - 7)
        - count(*) filter (where s.session_date > v.version_date - 7) as sessions_last_7d,
        count(*) filter (where s.session_date > target_date - 30)
        - count(*) filter (where s.session_date > v.version_date - 30) as sessions_last_30d,
        count(*) filter (where s.session_date > target_date - 90)
        - count(*) filter (where s.session_date > v.version_date - 90) as sessions_last_90d,
        count(*) filter (where s.purchase_made and s.session_date > target_date - 7)
        - count(*) filter (where s.purchase_made and s.session_date > v.version_date - 7)
            as purchases_last_7d,
        count(*) filter (where s.purchase_made and s.session_date > target_date - 30)
        - count(*) filter (where s.purchase_made and s.session_date > v.version_date - 30)
            as purchases_last_30d,
        count(*) filter (where s.purchase_made and s.session_date > target_date - 90)
        - count(*) filter (where s.purchase_made and s.session_date > v.version_date - 90)
            as purchases_last_90d,
        coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made and s.session_date > target_date - 30
        ), 0)
        - coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made and s.session_date > v.version_date - 30
        ), 0) as monetary_last_30d,
        coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made and s.session_date > target_date - 365
        ), 0)
        - coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made and s.session_date > v.version_date - 365
        ), 0) as monetary_last_365d,
        -- the 90 days before the last 30: (T - 120, T - 30]
        count(*) filter (
            where s.session_date > target_date - 120 and s.session_date <= target_date - 30
        )
        - count(*) filter (
            where s.session_date > v.version_date - 120
              and s.session_date <= v.version_date - 30
        ) as sessions_prev_90d,
        coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made
              and s.session_date > target_date - 120
              and s.session_date <= target_date - 30
        ), 0)
        - coalesce(sum(s.purchase_amount) filter (
            where s.purchase_made
              and s.session_date > v.version_date - 120
              and s.session_date <= v.version_date - 30
        ), 0) as monetary_prev_90d
    from edge_sessions as s
    join state_versions as v
        on v.customer_id = s.customer_id
        -- a version counts the sessions up to its own date
        and s.session_date <= v.version_date
    group by v.customer_id, v.version_date
)

select * from final
$$;
