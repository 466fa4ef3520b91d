-- intermediate.int_sessions_enriched: one row per session, with the category of the product
-- viewed (NULL without products.csv) and the session's hour and weekday.

with

sessions as (
    select * from staging.stg_sessions
),

products as (
    select * from staging.stg_products
),

final as (
    select
        sessions.*,
        products.category as product_category,
        -- date_part, not extract: the same whole numbers as a double instead of a numeric
        -- (extract returns numeric since PostgreSQL 14), at about half the cost per session
        date_part('hour', sessions.session_started_at)::integer as session_hour,
        -- ISO weekday: 1 = Monday ... 7 = Sunday
        date_part('isodow', sessions.session_started_at)::integer as session_weekday
    from sessions
    left join products on products.product_id = sessions.product_id
)

select * from final
