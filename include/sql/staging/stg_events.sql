-- staging.stg_events: core.events as the feature models read it (rename and cast only)

with

source as (
    select * from core.events
),

final as (
    select
        -- ids
        event_id,
        session_id,
        customer_id,
        product_id,
        -- time
        event_time,
        event_time::date as event_date,
        -- what happened
        event_type,
        price
    from source
)

select * from final
