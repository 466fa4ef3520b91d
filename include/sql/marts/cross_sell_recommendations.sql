-- marts.cross_sell_recommendations: per as-of date and product, up to
-- %(recommendations_per_product)s products that its buyers also buy ("customers who bought A
-- also buy B"), for the win-back experiments.
-- Evidence: co_purchase rules (B in the same order) and sequence rules (B bought within
-- %(sequence_window_days)s days after A) of marts.cross_sell_rules for the same as-of date,
-- refreshed just before in the same transaction; a pair needs a lift of at least
-- %(min_recommendation_lift)s, and when both kinds qualify the one with the higher confidence
-- is the evidence. Ranked by confidence (how often A's buyers take B), then lift.

with

rules as (
    select * from marts.cross_sell_rules
    where as_of_date = %(as_of_date)s
        and rule_kind in ('co_purchase', 'sequence')
        and lift >= %(min_recommendation_lift)s
),

best_evidence as (
    select distinct on (antecedent_product_id, consequent_product_id) *
    from rules
    order by antecedent_product_id, consequent_product_id, confidence desc, lift desc, rule_kind
),

ranked as (
    select
        best_evidence.*,
        row_number() over (
            partition by antecedent_product_id
            order by confidence desc, lift desc, consequent_product_id
        ) as recommendation_rank
    from best_evidence
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        antecedent_product_id as product_id,
        antecedent_product_name as product_name,
        recommendation_rank,
        consequent_product_id as recommended_product_id,
        consequent_product_name as recommended_product_name,
        -- evidence
        rule_kind as evidence,
        confidence,
        lift,
        support,
        pair_count
    from ranked
    where recommendation_rank <= %(recommendations_per_product)s
)

select * from final
