-- marts.funnel_leakage: one row per as-of date and product, and per category, over the last
-- %(leakage_window_days)s days: where viewers do not buy, ranked by an uncertainty-aware score.
--
-- How to read it (docs/analytics.md has more):
--   view_to_purchase_rate          purchases / views (sessions)
--   view_to_purchase_lower/_upper  its Wilson score interval at %(confidence_level)s
--   peer_view_to_purchase_rate     the rate of every other product (category) at the level
--   shrunk_view_to_purchase_rate   empirical-Bayes estimate: the rate pulled towards the
--                                  level's pooled rate by a beta prior fitted (method of
--                                  moments) to the spread between products (categories)
--   leakage_score                  views x (peer rate - upper bound of own rate), at least 0:
--                                  purchases lost against the peers even if the own rate is
--                                  as high as it plausibly is. A product with 3 views has a
--                                  wide interval and scores about 0; a much-viewed product
--                                  with a low rate scores high.
--   leakage_rank                   1 = the worst leak at the level
-- Reads int_product_funnel_sessions, materialised for the as-of date by ecom_insights.analytics.

with

funnel_sessions as (
    select * from int_product_funnel_sessions
    where activity_date between %(leakage_start)s and %(as_of_date)s
),

products as (
    select * from core.products
),

session_products as (
    select
        funnel_source,
        session_id,
        product_id,
        bool_or(reached_cart) as reached_cart,
        bool_or(reached_purchase) as reached_purchase
    from funnel_sessions
    group by funnel_source, session_id, product_id
),

by_product as (
    select
        session_products.funnel_source,
        session_products.product_id,
        products.product_name,
        products.category,
        count(*) as views,
        count(*) filter (where session_products.reached_cart) as carts,
        count(*) filter (where session_products.reached_purchase) as purchases
    from session_products
    left join products on products.product_id = session_products.product_id
    group by 1, 2, 3, 4
),

by_category as (
    select
        funnel_source,
        null::text as product_id,
        null::text as product_name,
        category,
        sum(views)::bigint as views,
        sum(carts)::bigint as carts,
        sum(purchases)::bigint as purchases
    from by_product
    group by funnel_source, category
),

entities as (
    select 'product' as level, * from by_product
    union all
    select 'category' as level, * from by_category
),

level_totals as (
    select
        level,
        count(*) as entity_count,
        sum(views)::float8 as total_views,
        sum(purchases)::float8 as total_purchases,
        sum(purchases)::float8 / sum(views) as pooled_rate
    from entities
    group by level
),

-- between-entity variance of the true rates: the observed weighted spread minus what binomial
-- noise alone would give (method of moments)
level_priors as (
    select
        level_totals.level,
        level_totals.pooled_rate,
        (
            sum(entities.views * power(entities.purchases::float8 / entities.views
                - level_totals.pooled_rate, 2))
            - level_totals.entity_count * level_totals.pooled_rate
                * (1 - level_totals.pooled_rate)
        ) / level_totals.total_views as between_variance
    from entities
    join level_totals on level_totals.level = entities.level
    group by level_totals.level, level_totals.pooled_rate, level_totals.entity_count,
        level_totals.total_views
),

-- prior strength (pseudo-views) of the beta prior; no spread beyond noise: full pooling
prior_strength as (
    select
        level,
        pooled_rate,
        case
            when between_variance > 0 and pooled_rate * (1 - pooled_rate) > between_variance
                then pooled_rate * (1 - pooled_rate) / between_variance - 1
        end as prior_views
    from level_priors
),

rated as (
    select
        entities.*,
        entities.purchases::float8 / entities.views as rate,
        (level_totals.total_purchases - entities.purchases)
            / nullif(level_totals.total_views - entities.views, 0) as peer_rate,
        case
            when prior_strength.prior_views is null then prior_strength.pooled_rate
            else (entities.purchases + prior_strength.prior_views * prior_strength.pooled_rate)
                / (entities.views + prior_strength.prior_views)
        end as shrunk_rate
    from entities
    join level_totals on level_totals.level = entities.level
    join prior_strength on prior_strength.level = entities.level
),

wilson as (
    select
        rated.*,
        (rate + %(z)s::float8 ^ 2 / (2 * views)) / (1 + %(z)s::float8 ^ 2 / views) as centre,
        %(z)s::float8 / (1 + %(z)s::float8 ^ 2 / views)
            * sqrt(rate * (1 - rate) / views + %(z)s::float8 ^ 2 / (4 * views ^ 2)) as half_width
    from rated
),

scored as (
    select
        wilson.*,
        greatest(centre - half_width, 0) as rate_lower,
        least(centre + half_width, 1) as rate_upper,
        greatest(views * (peer_rate - least(centre + half_width, 1)), 0) as leakage_score
    from wilson
),

final as (
    select
        -- ids
        %(as_of_date)s::date as as_of_date,
        funnel_source,
        level,
        category,
        product_id,
        product_name,
        %(leakage_start)s::date as window_start,
        %(as_of_date)s::date as window_end,
        -- funnel counts (sessions)
        views,
        carts,
        purchases,
        -- rates
        carts::float8 / views as view_to_cart_rate,
        purchases::float8 / nullif(carts, 0) as cart_to_purchase_rate,
        rate as view_to_purchase_rate,
        rate_lower as view_to_purchase_lower,
        rate_upper as view_to_purchase_upper,
        shrunk_rate as shrunk_view_to_purchase_rate,
        peer_rate as peer_view_to_purchase_rate,
        -- leakage
        views * peer_rate - purchases as purchase_gap,
        leakage_score,
        row_number() over (
            partition by level
            order by leakage_score desc, shrunk_rate, views desc, category, product_id
        ) as leakage_rank
    from scored
)

select * from final
