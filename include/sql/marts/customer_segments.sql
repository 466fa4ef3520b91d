-- customer_segments: one segment per customer at the as-of date, with the play marketing
-- should run and a score to rank by within the segment (take the top N).
-- Precedence, first match wins: new, prospect, lost, hibernating, at_risk, high_ltv, loyal,
-- active (docs/model-card.md, "Segments"). Parameters come from models/params.py.

with

features as (
    select
        customer_id,
        as_of_date,
        days_since_signup,
        frequency,
        monetary,
        recency_days,
        sessions_last_90d,
        cltv_proxy_365d
    from marts.customer_features
    where as_of_date = %(as_of_date)s
),

churn as (
    select customer_id, churn_probability, risk_band
    from marts.churn_scores
    where as_of_date = %(as_of_date)s
),

customer_value as (
    select customer_id, expected_value_365d
    from marts.customer_value
    where as_of_date = %(as_of_date)s
),

early_value as (
    select customer_id, probability_high_value
    from marts.early_high_value
    where as_of_date = %(as_of_date)s
),

actions as (
    select segment, recommended_action
    from unnest(%(segments)s::text[], %(actions)s::text[]) as a (segment, recommended_action)
),

joined as (
    select
        features.*,
        churn.churn_probability,
        churn.risk_band,
        customer_value.expected_value_365d,
        early_value.probability_high_value,
        100 * percent_rank() over (
            order by coalesce(customer_value.expected_value_365d, 0)
        ) as value_percentile
    from features
    left join churn using (customer_id)
    left join customer_value using (customer_id)
    left join early_value using (customer_id)
),

assigned as (
    select
        *,
        case
            when days_since_signup <= %(new_days)s then 'new'
            when frequency = 0 then 'prospect'
            when recency_days > %(lost_days)s then 'lost'
            when recency_days > %(hibernating_days)s then 'hibernating'
            when risk_band = 'high' then 'at_risk'
            when value_percentile >= %(high_ltv_percentile)s then 'high_ltv'
            when frequency >= %(loyal_min_purchases)s then 'loyal'
            else 'active'
        end as segment
    from joined
),

scored as (
    select
        *,
        -- what "top of the segment" means for the segment's play
        case segment
            -- promise: the early high-value probability, else first-month engagement
            when 'new' then coalesce(probability_high_value, 0)
            when 'prospect' then sessions_last_90d
            -- worth winning back: what they spent
            when 'lost' then monetary
            when 'hibernating' then monetary
            -- value at risk: churn probability x the trailing year's spend
            when 'at_risk' then churn_probability * cltv_proxy_365d
            else coalesce(expected_value_365d, cltv_proxy_365d)
        end::double precision as segment_score
    from assigned
),

final as (
    select
        -- ids
        scored.customer_id,
        scored.as_of_date,
        -- segment and play
        scored.segment,
        actions.recommended_action,
        -- ranking within the segment
        round(scored.segment_score::numeric, 4) as segment_score,
        round((100 * percent_rank() over (
            partition by scored.segment order by scored.segment_score
        ))::numeric, 2) as score_percentile,
        row_number() over (
            partition by scored.segment order by scored.segment_score desc, scored.customer_id
        ) as rank_in_segment,
        -- the inputs, for the dashboard and the campaign tools
        scored.churn_probability,
        scored.risk_band,
        scored.expected_value_365d,
        scored.probability_high_value,
        scored.recency_days,
        scored.frequency,
        scored.monetary
    from scored
    inner join actions using (segment)
)

select * from final
