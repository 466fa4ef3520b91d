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
