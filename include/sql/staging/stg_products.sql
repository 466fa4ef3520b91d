-- staging.stg_products: core.products as the feature models read it (rename and cast only)

with

source as (
    select * from core.products
),

final as (
    select
        product_id,
        product_name,
        category,
        price
    from source
)

select * from final
