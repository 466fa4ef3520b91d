-- marts.customer_value: expected purchases and spend per customer and as-of date, from the
-- BG/NBD and Gamma-Gamma models fitted on data up to that date (ecom_insights.models.clv,
-- docs/clv.md). One row per customer signed up (or purchasing) on or before the as-of date;
-- the model columns are NULL for a customer without a purchase yet. Idempotent.

create schema if not exists marts;

create table if not exists marts.customer_value (
    -- ids
    customer_id              text              not null,
    as_of_date               date              not null,
    -- the model's inputs (days)
    frequency                integer,
    recency_days             integer,
    t_days                   integer,
    monetary_value           numeric(14,2),
    -- BG/NBD
    probability_alive        double precision,
    expected_purchases_90d   double precision,
    expected_purchases_365d  double precision,
    -- Gamma-Gamma: expected spend of one purchase day
    expected_purchase_value  double precision,
    -- expected spend: expected purchases x expected_purchase_value, undiscounted
    expected_value_90d       double precision,
    expected_value_365d      double precision,
    -- provenance
    model_version            text              not null,
    primary key (as_of_date, customer_id)
);
