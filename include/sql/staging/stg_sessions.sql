-- staging.stg_sessions: core.sessions as the feature models read it (rename and cast only)

with

source as (
    select * from core.sessions
),

final as (
    select
        -- ids
        session_id,
        customer_id,
        product_viewed as product_id,
        -- time
        session_started_at,
        session_date,
        -- engagement
        -- double precision, as in core: the feature state sums it in whole microseconds
        -- (ddl/feature_session_totals.sql); a numeric cast here cost a third of that pass
        browsing_time_sec,
        pages_viewed,
        added_to_cart,
        device,
        campaign_id,
        -- money
        purchase_made,
        purchase_amount,
        discount_amount
    from source
)

select * from final
