-- marts.cross_sell_rules: association rules "antecedent -> consequent" per as-of date, mined
-- in SQL from the baskets of the last %(cross_sell_window_days)s days, of three kinds:
-- co_purchase (same order), co_view (same session) and sequence (bought on a later day within
-- %(sequence_window_days)s days); int_cross_sell_basket_items defines the baskets.
-- With n baskets, a baskets holding the antecedent, c the consequent and p both:
--   support = p / n, confidence = support / (a / n), lift = confidence / (c / n),
--   leverage = support - (a / n) (c / n), conviction = (1 - c / n) / (1 - confidence)
--   (infinite when confidence is 1), exactly as mlxtend's association_rules computes them.
-- Floor: a rule is kept only if p >= %(min_pair_count)s and support >= %(min_support)s
-- (products that cannot pass it are already left out of the basket items).
-- Rules from a product to itself are not kept. Reads int_cross_sell_basket_items,
-- materialised for the as-of date by ecom_insights.analytics.

with

-- not materialized: the joins below then see the temporary table and its statistics
basket_items as not materialized (
    select * from int_cross_sell_basket_items
),

products as (
    select * from core.products
),

rule_kinds as (
    select distinct rule_kind, baskets, min_count
    from basket_items
),

antecedent_items as (
    select rule_kind, basket_id, product_id, antecedent_count
    from basket_items
    where is_antecedent
),

consequent_items as (
    select rule_kind, basket_id, product_id, consequent_count
    from basket_items
    where is_consequent
),

-- co-occurrence is symmetric: count each unordered pair once, then take both directions
pair_counts as (
    select
        antecedent_items.rule_kind,
        antecedent_items.product_id as antecedent_product_id,
        consequent_items.product_id as consequent_product_id,
        count(*) as pair_count,
        min(antecedent_items.antecedent_count) as antecedent_count,
        min(consequent_items.consequent_count) as consequent_count
    from antecedent_items
    join consequent_items
        on consequent_items.rule_kind = antecedent_items.rule_kind
        and consequent_items.basket_id = antecedent_items.basket_id
        and consequent_items.product_id <> antecedent_items.product_id
    where antecedent_items.rule_kind = 'sequence'
        or antecedent_items.product_id < consequent_items.product_id
    group by 1, 2, 3
),

frequent_pairs as (
    select pair_counts.*
    from pair_counts
    join rule_kinds on rule_kinds.rule_kind = pair_counts.rule_kind
    where pair_counts.pair_count >= rule_kinds.min_count
),

-- the reverse of a co-occurrence rule: its consequent's count is the antecedent's count of
-- the same product (both sides of co-occurrence baskets are the same items)
directed_pairs as (
    select * from frequent_pairs
    union all
    select
        rule_kind,
        consequent_product_id,
        antecedent_product_id,
        pair_count,
        consequent_count,
        antecedent_count
    from frequent_pairs
    where rule_kind <> 'sequence'
),

supports as (
    select
        directed_pairs.*,
        rule_kinds.baskets,
        directed_pairs.antecedent_count::float8 / rule_kinds.baskets as antecedent_support,
        directed_pairs.consequent_count::float8 / rule_kinds.baskets as consequent_support,
        directed_pairs.pair_count::float8 / rule_kinds.baskets as support
    from directed_pairs
    join rule_kinds on rule_kinds.rule_kind = directed_pairs.rule_kind
),

confidences as (
    select supports.*, support / antecedent_support as confidence
    from supports
),

rules as (
    select
        confidences.*,
        confidence / consequent_support as lift,
        support - antecedent_support * consequent_support as leverage,
        case
            when confidence >= 1 then 'Infinity'::float8
            else (1 - consequent_support) / (1 - confidence)
        end as conviction
    from confidences
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        rules.rule_kind,
        rules.antecedent_product_id,
        antecedents.product_name as antecedent_product_name,
        antecedents.category as antecedent_category,
        rules.consequent_product_id,
        consequents.product_name as consequent_product_name,
        consequents.category as consequent_category,
        -- window
        %(cross_sell_start)s::date as window_start,
        %(as_of_date)s::date as window_end,
        case when rules.rule_kind = 'sequence' then %(sequence_window_days)s end
            as sequence_window_days,
        -- counts
        rules.baskets,
        rules.antecedent_count,
        rules.consequent_count,
        rules.pair_count,
        -- metrics
        rules.antecedent_support,
        rules.consequent_support,
        rules.support,
        rules.confidence,
        rules.lift,
        rules.leverage,
        rules.conviction,
        row_number() over (
            partition by rules.rule_kind
            order by rules.lift desc, rules.pair_count desc, rules.antecedent_product_id,
                rules.consequent_product_id
        ) as lift_rank
    from rules
    left join products as antecedents on antecedents.product_id = rules.antecedent_product_id
    left join products as consequents on consequents.product_id = rules.consequent_product_id
)

select * from final
